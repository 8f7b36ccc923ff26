{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "btk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the resource name prefix. The runner ServiceAccount adds "-runner", so keep room for it.
*/}}
{{- define "btk.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "btk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every object of the release.
*/}}
{{- define "btk.labels" -}}
helm.sh/chart: {{ include "btk.chart" . }}
{{ include "btk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: backtest-kit
{{- end }}

{{/*
Selector labels of the operator pod (never change between upgrades).
*/}}
{{- define "btk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "btk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "btk.operatorServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "btk.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "btk.runnerServiceAccountName" -}}
{{- default (printf "%s-runner" (include "btk.fullname" .)) .Values.runner.serviceAccount.name }}
{{- end }}

{{- define "btk.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "btk.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository (default .Chart.AppVersion .Values.runner.image.tag) }}
{{- end }}

{{/*
Watch scope: "all" (every namespace), "list" (watch.namespaces) or "own" (the release namespace).
*/}}
{{- define "btk.watchScope" -}}
{{- if .Values.watch.ownNamespaceOnly }}own{{ else if .Values.watch.namespaces }}list{{ else }}all{{ end }}
{{- end }}

{{/*
The watched namespaces as a JSON list; empty for the "all" scope.
*/}}
{{- define "btk.watchedNamespaces" -}}
{{- $scope := include "btk.watchScope" . }}
{{- if eq $scope "own" }}
{{- list .Release.Namespace | toJson }}
{{- else if eq $scope "list" }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/*
Namespaces the runner ServiceAccount is created in, as a JSON list: the watched namespaces (the
release namespace for the all-namespaces scope) plus runner.serviceAccount.additionalNamespaces.
*/}}
{{- define "btk.runnerNamespaces" -}}
{{- $watched := include "btk.watchedNamespaces" . | fromJsonArray }}
{{- $base := $watched | default (list .Release.Namespace) }}
{{- concat $base .Values.runner.serviceAccount.additionalNamespaces | uniq | toJson }}
{{- end }}

{{- define "btk.peeringName" -}}
{{- default (include "btk.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
"true" when the Prometheus Operator API is available or its presence is assumed.
*/}}
{{- define "btk.prometheusOperatorAvailable" -}}
{{- if or .Values.monitoring.assumePrometheusOperator (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/*
Labels for Prometheus Operator objects.
*/}}
{{- define "btk.monitoringLabels" -}}
{{ include "btk.labels" . }}
{{- with .Values.monitoring.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
