{{- /* The password kept across upgrades: the live Secret's, else a new one. */ -}}
{{- define "auth.password" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (printf "%s-auth" .Release.Name) -}}
{{- if and $secret $secret.data -}}
{{- index $secret.data "password" -}}
{{- else -}}
{{- randAlphaNum 24 | b64enc -}}
{{- end -}}
{{- end -}}
