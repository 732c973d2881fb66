{{/* Object names: the release name, unless fullnameOverride says otherwise. */}}
{{- define "mailserver.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The StatefulSet's only pod: RBAC names it, so exec is allowed on nothing else. */}}
{{- define "mailserver.podName" -}}
{{- include "mailserver.fullname" . }}-0
{{- end -}}

{{- define "mailserver.selectorLabels" -}}
app.kubernetes.io/name: mailserver
app.kubernetes.io/instance: {{ include "mailserver.fullname" . }}
{{- end -}}

{{/* Labels every object carries. The first three are Helm's own: the manifests/ test drops them. */}}
{{- define "mailserver.labels" -}}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "mailserver.selectorLabels" . }}
app.kubernetes.io/part-of: dms-agent
{{- end -}}

{{- define "mailserver.secretName" -}}
{{- default (printf "%s-secrets" (include "mailserver.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
DMS's environment: the chart's derived values, then the `env` passthrough on top. DMS breaks on
"true"/"false" (it tests for 1/0), so booleans, and the strings "true"/"false" in any case,
become "1"/"0"; every value is a string.
*/}}
{{- define "mailserver.dmsEnv" -}}
{{- $env := dict -}}
{{- $_ := set $env "OVERRIDE_HOSTNAME" .Values.pod.dockermailserver.override_hostname -}}
{{- if .Values.ssl.issuer.name -}}
{{- $_ := set $env "SSL_TYPE" "manual" -}}
{{- $_ := set $env "SSL_CERT_PATH" "/tmp/dms/custom-certs/tls.crt" -}}
{{- $_ := set $env "SSL_KEY_PATH" "/tmp/dms/custom-certs/tls.key" -}}
{{- end -}}
{{- range $k, $v := .Values.env -}}
{{- if kindIs "bool" $v -}}
{{- $_ := set $env $k (ternary "1" "0" $v) -}}
{{- else if and (kindIs "string" $v) (has (lower $v) (list "true" "false")) -}}
{{- $_ := set $env $k (ternary "1" "0" (eq (lower $v) "true")) -}}
{{- else if kindIs "invalid" $v -}}
{{- $_ := set $env $k "" -}}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) -}}
{{- $_ := set $env $k (printf "%v" $v) -}}
{{- else -}}
{{- $_ := set $env $k (toString $v) -}}
{{- end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* The agent's settings file: the generated wiring, then `agent.settings` merged on top. */}}
{{- define "mailserver.agentSettings" -}}
{{- $full := include "mailserver.fullname" . -}}
{{- $generated := dict
  "server" (dict "host" "0.0.0.0" "port" (int .Values.agent.port))
  "logging" (dict "level" .Values.agent.logLevel "format" "json")
  "sources" (list
    (dict "kind" "configmap" "name" (printf "%s-state" $full))
    (dict "kind" "secret" "name" (include "mailserver.secretName" .)))
  "dms" (dict
    "configDir" "/tmp/docker-mailserver"
    "mailDir" nil
    "containerConfigDir" "/tmp/docker-mailserver"
    "containerMailDir" "/var/mail"
    "setupCommand" (list "setup")
    "commandTimeout" (int .Values.agent.commandTimeout)
    "executor" (dict "kind" "kube" "container" "mailserver")
    "environment" (include "mailserver.dmsEnv" . | fromYaml))
  "reconcile" (dict
    "ledgerPath" "/tmp/docker-mailserver/.dms-agent/ledger.json"
    "ledgerKeyFile" "/etc/dms-agent/secrets/ledger.key")
  "kube" (dict "enabled" true)
  "checks" (dict "enabled" .Values.liveness_tests.enabled)
  "dns" (dict "enabled" false)
  "lb" (dict "enabled" .Values.poor_mans_k8s_lb.enabled)
  "dkim" (dict "enabled" true)
-}}
{{- if .Values.liveness_tests.commands -}}
{{- $_ := set $generated.checks "commands" .Values.liveness_tests.commands -}}
{{- end -}}
{{- if .Values.poor_mans_k8s_lb.enabled -}}
{{- $_ := set $generated.lb "webhookUrl" .Values.poor_mans_k8s_lb.webhook_url -}}
{{- $_ := set $generated.lb "secretFile" "/etc/dms-agent/secrets/webhook-secret" -}}
{{- end -}}
{{- $merged := mustMergeOverwrite $generated (deepCopy .Values.agent.settings) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* The desired mail state; demo mode adds one account. */}}
{{- define "mailserver.mailState" -}}
{{- $state := deepCopy .Values.mailState -}}
{{- $domains := default (dict) $state.domains -}}
{{- range .Values.domains -}}
{{- if not (hasKey $domains .) -}}
{{- $_ := set $domains . (dict "dkim" (deepCopy $.Values.dkim)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $state "domains" $domains -}}
{{- if .Values.demo_mode.enabled -}}
{{- $accounts := default (dict) $state.accounts -}}
{{- $_ := set $accounts (printf "demo@%s" (first .Values.domains)) (dict) -}}
{{- $_ := set $state "accounts" $accounts -}}
{{- end -}}
{{- toYaml $state -}}
{{- end -}}

{{- define "mailserver.passwords" -}}
{{- $pw := deepCopy .Values.secrets.passwords -}}
{{- if .Values.demo_mode.enabled -}}
{{- $_ := set $pw (printf "demo@%s" (first .Values.domains)) (dict "password" .Values.demo_mode.password) -}}
{{- end -}}
{{- toYaml $pw -}}
{{- end -}}

{{/* Mail ports: name, container port, PROXY-protocol twin (port + 10000). */}}
{{- define "mailserver.ports" -}}
- {name: smtp, port: 25}
- {name: pop3, port: 110}
- {name: imap, port: 143}
- {name: smtps, port: 465}
- {name: submission, port: 587}
- {name: imaps, port: 993}
- {name: pop3s, port: 995}
{{- end -}}

{{/*
The mailserver's livenessProbe, fail-open: it fails ONLY when the agent's verdict file exists,
is fresh (written within 120 s) and its first line is `unhealthy`. No file, a stale file, an
unreadable file, `healthy` or `unknown` all pass, so the agent's absence never restarts DMS.
The format is the checks capability's: first line `healthy`, `unhealthy` or `unknown`.
*/}}
{{- define "mailserver.verdictProbe" -}}
f=/var/run/dms-agent/verdict
[ -f "$f" ] || exit 0
mtime=$(stat -c %Y "$f" 2>/dev/null) || exit 0
[ $(( $(date +%s) - mtime )) -le 120 ] || exit 0
read -r verdict < "$f" || [ -n "$verdict" ] || exit 0
[ "$verdict" != unhealthy ]
{{- end -}}

{{/* Local readiness: Postfix listens on 25 (no connection, so no log line per probe). */}}
{{- define "mailserver.smtpListening" -}}
ss --listening --tcp --numeric | grep -qE ':25[[:space:]]'
{{- end -}}

{{/*
preStop: tell the agent we are stopping, then wait (bounded) while a `setup` command the agent
started by exec still runs in this container, so none is cut half-way.
*/}}
{{- define "mailserver.preStop" -}}
touch /var/run/dms-agent/stopping 2>/dev/null || true
i=0
while grep -qs '/usr/local/bin/[s]etup' /proc/[0-9]*/cmdline && [ "$i" -lt {{ add .Values.agent.commandTimeout 10 }} ]; do
  sleep 1
  i=$((i + 1))
done
{{- end -}}

{{/* Runs once per pod start, as root, before the agent and DMS. */}}
{{- define "mailserver.prepare" -}}
# The agent (uid 10001) keeps its ledger in its own folder of the config volume.
mkdir -p /tmp/docker-mailserver/.dms-agent
chmod 0700 /tmp/docker-mailserver/.dms-agent
chown 10001:10001 /tmp/docker-mailserver/.dms-agent
# Files owned by the <name>-files ConfigMap.
for f in /etc/dms-files/*; do
  if [ -f "$f" ]; then cp "$f" /tmp/docker-mailserver/; fi
done
chmod 0755 /tmp/docker-mailserver/user-patches.sh
{{- end -}}

{{/* Port names are at most 15 characters: submission-proxy would not fit. */}}
{{- define "mailserver.proxyPortName" -}}
{{- if eq . "submission" -}}subm-proxy{{- else -}}{{ . }}-proxy{{- end -}}
{{- end -}}
