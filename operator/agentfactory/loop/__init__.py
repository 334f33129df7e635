"""The reconcile loop, shared by the operator and `agentfactory local`."""
