{{/*
Expand the name of the chart.
*/}}
{{- define "sms-checker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "sms-checker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "sms-checker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Names of the two components' objects: <fullname>-app and <fullname>-model
(sms-checker-app and sms-checker-model for the release "sms-checker").
*/}}
{{- define "sms-checker.app.fullname" -}}
{{- printf "%s-app" (include "sms-checker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sms-checker.model.fullname" -}}
{{- printf "%s-model" (include "sms-checker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "sms-checker.labels" -}}
helm.sh/chart: {{ include "sms-checker.chart" . }}
{{ include "sms-checker.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "sms-checker.name" . }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "sms-checker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sms-checker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component.
Usage: include "sms-checker.componentLabels" (dict "ctx" $ "component" "app")
*/}}
{{- define "sms-checker.componentLabels" -}}
{{ include "sms-checker.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sms-checker.componentSelectorLabels" -}}
{{ include "sms-checker.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Pod labels of one component: its labels, plus the `app` and `version` labels Istio
uses for telemetry and the DestinationRule's subsets, plus the sidecar opt-in/out.
Usage: include "sms-checker.podLabels" (dict "ctx" $ "component" "app" "values" .Values.app)
*/}}
{{- define "sms-checker.podLabels" -}}
{{ include "sms-checker.componentLabels" (dict "ctx" .ctx "component" .component) }}
app: {{ include (printf "sms-checker.%s.fullname" .component) .ctx }}
version: {{ .values.version | quote }}
sidecar.istio.io/inject: {{ ternary "true" "false" (and .ctx.Values.istio.enabled .ctx.Values.istio.sidecarInjection) | quote }}
{{- with .values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Image reference of one component: repository:tag (the tag defaults to the appVersion).
Usage: include "sms-checker.image" (dict "ctx" $ "image" .Values.app.image)
*/}}
{{- define "sms-checker.image" -}}
{{- printf "%s:%s" .image.repository (toString (default .ctx.Chart.AppVersion .image.tag)) }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "sms-checker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sms-checker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
In-cluster URL of the model service, as the app calls it.
*/}}
{{- define "sms-checker.modelUrl" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "sms-checker.model.fullname" .) .Release.Namespace .Values.clusterDomain .Values.model.service.port }}
{{- end }}
