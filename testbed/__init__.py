"""What the tests and the benchmarks both stand on: a real control plane on loopback
(`apiserver`), Nodes whose pods run in bubblewrap (`node`, `kubelet`) or end at once with
scripted results (`instant`), the operator's identity as the chart installs it (`identity`),
the cluster of the end-to-end tests (`cluster`), the local fakes of the Messages API and of
GitHub (`fakes/`), git helpers, the example repository's files (`scripts`) and builders of
specs and observations (`builders`)."""
