{{/*
Chart name, truncated to 63 characters (the limit of a label value). values.schema.json holds
nameOverride to a DNS-1035 label.
*/}}
{{- define "infergate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the prefix of every object's name. With the release name "infergate" it is
"infergate", the names config/default (kustomize) uses.

The templates append "-gateway", "-metrics", "-manager" and "-leader-election" to it, and a
Service name is a DNS-1035 label of at most 63 characters: the full name is cut to 63 minus the
longest suffix, 47 characters, without trailing "-". A release name that does not start with a
letter, or holds a ".", gives no valid Service name: the chart fails and asks for
fullnameOverride.
*/}}
{{- define "infergate.fullname" -}}
{{- $full := .Values.fullnameOverride }}
{{- if not $full }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- $full = ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) }}
{{- end }}
{{- $full = regexReplaceAll "-+$" (trunc (sub 63 (len "-leader-election") | int) $full) "" }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $full) }}
{{- fail (printf "object names would start with %q, which is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter) as Service names must be: set fullnameOverride, such as --set fullnameOverride=infergate" $full) }}
{{- end }}
{{- $full }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "infergate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "infergate.labels" -}}
helm.sh/chart: {{ include "infergate.chart" . }}
{{ include "infergate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "infergate.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: infergate
{{- end }}

{{/*
Labels that identify this release's objects.
*/}}
{{- define "infergate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infergate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the manager pods.
*/}}
{{- define "infergate.managerSelectorLabels" -}}
{{ include "infergate.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{/*
Name of the manager's ServiceAccount.
*/}}
{{- define "infergate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infergate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "infergate.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Image reference, by digest when one is given.
*/}}
{{- define "infergate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "infergate.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Whether more than one manager pod can run (autoscaling, or replicaCount above 1).
*/}}
{{- define "infergate.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Seconds in a Go duration, such as 5s, 1m30s or 1.5h in the forms values.schema.json accepts, as
a number; "" is 0.
*/}}
{{- define "infergate.durationSeconds" -}}
{{- $seconds := 0.0 }}
{{- $unitSeconds := dict "h" 3600 "m" 60 "s" 1 "ms" 0.001 "us" 0.000001 "µs" 0.000001 "ns" 0.000000001 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(h|ms|m|s|us|µs|ns)" . -1 }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $seconds = addf $seconds (mulf $number (get $unitSeconds (trimPrefix $number .))) }}
{{- end }}
{{- $seconds }}
{{- end }}

{{/*
Gateway replicas that share the budgets (--budget-replicas): without a budget store, or while it
is away with failureMode Open, each replica admits a budget's limit divided by this. With
autoscaling it is autoscaling.maxReplicas, so that the replicas together never admit more than
the limit; replicaCount 0 counts as 1.
*/}}
{{- define "infergate.budgetReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.maxReplicas | int }}
{{- else }}
{{- max 1 (int .Values.replicaCount) }}
{{- end }}
{{- end }}

{{/*
Name of the budget store's Secret and Service when the chart runs Redis (budgets.redis.enabled):
<fullname>-redis, at most 53 characters.
*/}}
{{- define "infergate.redisName" -}}
{{- printf "%s-redis" (include "infergate.fullname" .) }}
{{- end }}

{{/*
Name of the Redis StatefulSet: the StatefulSet controller labels its pods with
controller-revision-hash=<name>-<10 characters>, a label value of at most 63 characters, so the
name has at most 52: <fullname>-redis with the full name cut to 46 characters.
*/}}
{{- define "infergate.redisStatefulSetName" -}}
{{- printf "%s-redis" (regexReplaceAll "-+$" (include "infergate.fullname" . | trunc 46) "") }}
{{- end }}

{{/*
Labels that select the Redis pod.
*/}}
{{- define "infergate.redisSelectorLabels" -}}
{{ include "infergate.selectorLabels" . }}
app.kubernetes.io/component: budget-store
{{- end }}
