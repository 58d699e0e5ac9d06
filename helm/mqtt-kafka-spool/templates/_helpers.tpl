{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "mks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Also the StatefulSet name, hence the prefix of every pod name and so of
every MQTT client id: changing it (release name, nameOverride, fullnameOverride) abandons the
replicas' persistent MQTT sessions and spool volumes. Truncated to 52 characters so that pod
names (<fullname>-<ordinal>) and the controller-revision-hash label stay within 63.
*/}}
{{- define "mks.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mks.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mks.labels" -}}
helm.sh/chart: {{ include "mks.chart" . }}
{{ include "mks.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mks.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mks.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mks.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "mks.envString" (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}
{{- end }}

{{/* Absolute path of the spool database file (SPOOL_PATH). */}}
{{- define "mks.spoolPath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.persistence.mountPath) .Values.persistence.fileName }}
{{- end }}

{{/* SHUTDOWN_TIMEOUT_MS: the grace period minus the margin, so the bridge exits before SIGKILL. */}}
{{- define "mks.shutdownTimeoutMs" -}}
{{- $budget := sub (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownMarginSeconds) }}
{{- if lt $budget 1 }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdownMarginSeconds (%v) by at least 1" .Values.terminationGracePeriodSeconds .Values.shutdownMarginSeconds) }}
{{- end }}
{{- mul $budget 1000 }}
{{- end }}

{{/*
A value as an environment variable string. YAML numbers reach templates as float64, and
`toString 1073741824.0` is "1.073741824e+09"; integral numbers are printed as integers instead.
*/}}
{{- define "mks.envString" -}}
{{- $v := . }}
{{- if and (kindIs "float64" $v) (eq $v (float64 (int64 $v))) }}
{{- int64 $v | toString }}
{{- else }}
{{- toString $v }}
{{- end }}
{{- end }}

{{/* Name of the routes ConfigMap, or "" when no routes file is configured. */}}
{{- define "mks.routesConfigMap" -}}
{{- if .Values.routes.existingConfigMap }}
{{- .Values.routes.existingConfigMap }}
{{- else if .Values.routes.inline }}
{{- printf "%s-routes" (include "mks.fullname" .) }}
{{- end }}
{{- end }}

{{/* The routes file content for the chart's ConfigMap: a string verbatim, a map as YAML. */}}
{{- define "mks.routesContent" -}}
{{- if kindIs "string" .Values.routes.inline }}
{{- .Values.routes.inline }}
{{- else }}
{{- toYaml .Values.routes.inline }}
{{- end }}
{{- end }}

{{/*
MQTT_SHARED_GROUP, or empty for plain subscriptions. sharedSubscription.enabled: auto (on when
replicas > 1, unless config.MQTT_TOPIC already names $share/ filters by hand, the way the chart's
docs told before the group existed), true (always: scaling 1 -> N later changes nothing on the
broker) or false (never: with several replicas each then receives every message). The group is
sharedSubscription.group, else the StatefulSet's name (derived from the release name, like the
pods' client ids).
*/}}
{{- define "mks.sharedGroup" -}}
{{- $s := .Values.sharedSubscription }}
{{- $handWritten := contains "$share/" (toString (.Values.config.MQTT_TOPIC | default "")) }}
{{- $on := false }}
{{- if eq (toString $s.enabled) "true" }}
{{- if $handWritten }}
{{- fail "sharedSubscription.enabled=true: config.MQTT_TOPIC already has $share/ filters; give plain filters (the chart adds $share/<group>/) or set sharedSubscription.enabled=auto" }}
{{- end }}
{{- $on = true }}
{{- else if eq (toString $s.enabled) "auto" }}
{{- if include "mks.sessionGroup" . }}
{{- /* A session group shares its subscriptions only with several sessions. */}}
{{- $on = and (gt (int .Values.sessionGroup.sessions) 1) (not $handWritten) }}
{{- else }}
{{- $on = and (gt (int .Values.replicas) 1) (not $handWritten) }}
{{- end }}
{{- end }}
{{- if $on }}
{{- default (include "mks.fullname" .) $s.group }}
{{- end }}
{{- end }}

{{/*
BRIDGE_GROUP, or empty without a session group. sessionGroup.enabled: auto (on when replicas > 1),
true (always: a single replica in a group of one) or false (each pod its own session, as before).
The name is sessionGroup.name, else the StatefulSet's name.
*/}}
{{- define "mks.sessionGroup" -}}
{{- $g := .Values.sessionGroup }}
{{- $on := false }}
{{- if eq (toString $g.enabled) "true" }}{{ $on = true }}
{{- else if eq (toString $g.enabled) "auto" }}{{ $on = gt (int .Values.replicas) 1 }}
{{- end }}
{{- if $on }}
{{- default (include "mks.fullname" .) $g.name }}
{{- end }}
{{- end }}

{{/*
The group's MQTT_CLIENT_ID: sessionGroup.clientId, else the client id the pods had before the group
(their pod names), so an existing release keeps what its broker sessions hold: with one session
<prefix><statefulset>-0 (pod 0's), with N sessions <prefix><statefulset> (session i is
<prefix><statefulset>-i: pod i's).
*/}}
{{- define "mks.groupClientId" -}}
{{- $g := .Values.sessionGroup }}
{{- if $g.clientId }}{{ $g.clientId }}
{{- else if gt (int $g.sessions) 1 }}{{ printf "%s%s" .Values.mqttClientId.prefix (include "mks.fullname" .) }}
{{- else }}{{ printf "%s%s-0" .Values.mqttClientId.prefix (include "mks.fullname" .) }}
{{- end }}
{{- end }}
