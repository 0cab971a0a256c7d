{{- define "monitoring.labels" -}}
app.kubernetes.io/part-of: monitoring
app.kubernetes.io/instance: {{ .Release.Name }}
release: monitoring
{{- end }}
