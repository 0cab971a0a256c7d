{{- define "db.existing" -}}
{{- lookup "v1" "ConfigMap" .Release.Namespace "db-config" | toYaml -}}
{{- end -}}
