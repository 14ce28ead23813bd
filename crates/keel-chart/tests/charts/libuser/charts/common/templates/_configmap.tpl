{{- define "common.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "common.fullname" .root }}-{{ .name }}
data:
  {{- .data | nindent 2 }}
{{- end -}}
