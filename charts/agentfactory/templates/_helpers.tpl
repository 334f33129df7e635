{{/* The release's full name, at most 63 characters. */}}
{{- define "agentfactory.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agentfactory.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agentfactory.labels" -}}
{{ include "agentfactory.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentfactory
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "agentfactory.serviceAccountName" -}}
{{- default (include "agentfactory.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The namespaces the operator watches (empty when cluster-wide). */}}
{{- define "agentfactory.namespaces" -}}
{{- if not .Values.clusterWide -}}
{{- default (list .Release.Namespace) .Values.watchNamespaces | uniq | join "," -}}
{{- end -}}
{{- end -}}

{{/* The model gateway's name and pod labels (apart from the operator's selector). */}}
{{- define "agentfactory.gatewayName" -}}
{{- printf "%s-gateway" (include "agentfactory.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentfactory.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
