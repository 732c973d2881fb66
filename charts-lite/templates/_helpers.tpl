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

{{/* The passwords Secret: a state source the agent watches (RBAC names it). */}}
{{- define "mailserver.secretName" -}}
{{- default (printf "%s-secrets" (include "mailserver.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The agent's own keys (ledger.key, webhook-secret): only mounted, never a source. */}}
{{- define "mailserver.agentSecretName" -}}
{{- default (printf "%s-agent-secrets" (include "mailserver.fullname" .)) .Values.secrets.existingAgentSecret -}}
{{- end -}}

{{/* "1" when DMS's environment enables ClamAV (the agent then checks clamd's socket). */}}
{{- define "mailserver.clamav" -}}
{{- if eq (get (include "mailserver.dmsEnv" . | fromYaml) "ENABLE_CLAMAV") "1" -}}1{{- end -}}
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
    "environmentFrom" (include "mailserver.agentEnvDir" .))
  "reconcile" (dict
    "ledgerPath" "/tmp/docker-mailserver/.dms-agent/ledger.json"
    "ledgerKeyFile" "/etc/dms-agent/secrets/ledger.key")
  "kube" (dict "enabled" true "events" true)
  "checks" (dict
    "enabled" .Values.liveness_tests.enabled
    "verdictFile" (include "mailserver.verdictFile" .)
    "dmsDefaults" (dict "enabled" true "clamdSocket" "/var/run/clamav/clamd.ctl"))
  "dns" (dict "enabled" .Values.dns.enabled)
  "lb" (dict "enabled" .Values.poor_mans_k8s_lb.enabled)
  "dkim" (dict
    "enabled" true
    "backend" "auto"
    "stateFile" "/tmp/docker-mailserver/.dms-agent/dkim.json")
-}}
{{- if .Values.liveness_tests.commands -}}
{{- $exec := dict "name" "commands" "kind" "exec" "commands" .Values.liveness_tests.commands -}}
{{- $_ := set $generated.checks "checks" (list $exec) -}}
{{- end -}}
{{- if .Values.dns.enabled -}}
{{- $dns := $generated.dns -}}
{{- $_ := set $dns "mxHost" (default .Values.pod.dockermailserver.override_hostname .Values.dns.mxHost) -}}
{{- range $key := list "ipv4" "ipv6" "egress" "nameservers" -}}
{{- with get $.Values.dns $key -}}
{{- $_ := set $dns $key . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.poor_mans_k8s_lb.enabled -}}
{{- $target := dict "url" .Values.poor_mans_k8s_lb.webhook_url "format" .Values.poor_mans_k8s_lb.format "secretFile" "/etc/dms-agent/secrets/webhook-secret" -}}
{{- $_ := set $generated.lb "targets" (list $target) -}}
{{- $_ := set $generated.lb "address" (include "mailserver.lbAddress" . | fromYaml) -}}
{{- if .Values.liveness_tests.enabled -}}
{{- $_ := set $generated.lb "waitForCheck" "smtp" -}}
{{- end -}}
{{- $_ := set $generated.lb "deleteOnShutdown" true -}}
{{- $_ := set $generated.lb "stateFile" "/tmp/docker-mailserver/.dms-agent/lb.json" -}}
{{- $ports := list -}}
{{- range (include "mailserver.ports" . | fromYamlArray) -}}
{{- $ports = append $ports (dict "name" .name "frontend" .port "backend" (get $.Values.service.nodePorts .name) "proxyProtocol" $.Values.haproxy.enabled) -}}
{{- end -}}
{{- $_ := set $generated.lb "ports" $ports -}}
{{- end -}}
{{- if .Values.mailflow.enabled -}}
{{- $_ := set $generated "mailflow" (dict
  "enabled" true
  "logFiles" (list "/var/log/mail/mail.log")
  "stateFile" "/tmp/docker-mailserver/.dms-agent/mailflow.json"
  "postfixExporterNames" .Values.mailflow.postfixExporterNames) -}}
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

{{/*
Mail ports: name, container port, PROXY-protocol twin. The twins sit on port + 10000 except
SMTP's: 10025 is where Amavis hands mail back to Postfix, so SMTP's twin is 12525 (the port
DMS's own Kubernetes docs use). POP3 only with ENABLE_POP3, as DMS serves it only then.
*/}}
{{- define "mailserver.ports" -}}
{{- $env := include "mailserver.dmsEnv" . | fromYaml -}}
- {name: smtp, port: 25, proxy: 12525}
{{- if eq (get $env "ENABLE_POP3") "1" }}
- {name: pop3, port: 110, proxy: 10110}
{{- end }}
- {name: imap, port: 143, proxy: 10143}
- {name: smtps, port: 465, proxy: 10465}
- {name: submission, port: 587, proxy: 10587}
- {name: imaps, port: 993, proxy: 10993}
{{- if eq (get $env "ENABLE_POP3") "1" }}
- {name: pop3s, port: 995, proxy: 10995}
{{- end }}
{{- end -}}

{{/* The PROXY twin's port of one mail port (by name). */}}
{{- define "mailserver.proxyPort" -}}
{{- $name := .name -}}
{{- range (include "mailserver.ports" .root | fromYamlArray) -}}
{{- if eq .name $name }}{{ .proxy }}{{ end -}}
{{- end -}}
{{- end -}}

{{/*
Where the agent reads DMS's environment: the <name>-env ConfigMap the mailserver's envFrom
names, mounted as a folder. One copy, so the agent's checks and DKIM backend follow DMS's.
*/}}
{{- define "mailserver.agentEnvDir" -}}
/etc/dms-agent/dms-env
{{- end -}}

{{/* Where the agent writes its verdict (checks.verdictFile): the shared emptyDir. */}}
{{- define "mailserver.verdictFile" -}}
/var/run/dms-agent/verdict
{{- end -}}

{{/* Local readiness: Postfix listens on 25 (no connection, so no log line per probe). */}}
{{- define "mailserver.smtpListening" -}}
ss --listening --tcp --numeric | grep -qE ':25[[:space:]]'
{{- end -}}

{{/*
preStop: take the agent's apply lock (reconcile: one applier at a time) and hold it until this
container is gone, so the agent starts no `setup` on a stopping DMS; a pass in progress ends
first (bounded wait). The holder's pid, written to `stopping`, says the lock is ours. A holder
that never gets the lock gives up after the same bound.
*/}}
{{- define "mailserver.preStop" -}}
lock=/tmp/docker-mailserver/dms-agent.lock
mark=/var/run/dms-agent/stopping
limit={{ add .Values.agent.commandTimeout 10 }}
rm -f "$mark"
[ -f "$lock" ] || exit 0
setsid sh -c 'exec 9<"$1"; flock -x -w "$2" 9 || exit 0; echo $$ > "$3"; exec sleep 2147483647' \
  holder "$lock" "$limit" "$mark" </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s "$mark" ] && [ "$i" -lt $((limit * 5)) ]; do
  sleep 0.2
  i=$((i + 1))
done
{{- end -}}

{{/* Runs once per pod start, as root, before the agent and DMS. */}}
{{- define "mailserver.prepare" -}}
# The agent (uid 10001) keeps its ledger, DKIM and LB state in its own folder of
# the config volume. Its apply lock (the mailserver's preStop takes it too) is
# where the agent looks for it: in the config folder itself.
mkdir -p /tmp/docker-mailserver/.dms-agent
chmod 0700 /tmp/docker-mailserver/.dms-agent
chown 10001:10001 /tmp/docker-mailserver/.dms-agent
touch /tmp/docker-mailserver/dms-agent.lock
chown 10001:10001 /tmp/docker-mailserver/dms-agent.lock
chmod 0600 /tmp/docker-mailserver/dms-agent.lock
# Files owned by the <name>-files ConfigMap, folders included (rspamd/override.d/...);
# kubelet's own ..data links are skipped.
cd /etc/dms-files
find -L . -type f ! -path './..*' | while read -r f; do
  mkdir -p "/tmp/docker-mailserver/$(dirname "$f")"
  cp "$f" "/tmp/docker-mailserver/$f"
done
chmod 0755 /tmp/docker-mailserver/user-patches.sh
{{- end -}}

{{/* Port names are at most 15 characters: submission-proxy would not fit. */}}
{{- define "mailserver.proxyPortName" -}}
{{- if eq . "submission" -}}subm-proxy{{- else -}}{{ . }}-proxy{{- end -}}
{{- end -}}

{{/*
The mailserver's persistent volumes: name, mount path, size, storage class, and the operator's
own claim (existingClaim) when there is one. Only those without existingClaim become claim
templates of the StatefulSet.
*/}}
{{- define "mailserver.persistentVolumes" -}}
{{- $p := .Values.persistence -}}
{{- $volumes := dict
  "mail-data" (dict "mountPath" "/var/mail" "size" $p.size "spec" $p.mailData)
  "mail-state" (dict "mountPath" "/var/mail-state" "size" $p.mailState.size "spec" $p.mailState)
  "mail-config" (dict "mountPath" "/tmp/docker-mailserver" "size" $p.mailConfig.size "spec" $p.mailConfig)
-}}
{{- if $p.mailLog.enabled -}}
{{- $_ := set $volumes "mail-log" (dict "mountPath" "/var/log/mail" "size" $p.mailLog.size "spec" $p.mailLog) -}}
{{- end -}}
{{- /* by name: the claim templates' order is part of what cannot change */ -}}
{{- range $name, $v := $volumes }}
- name: {{ $name }}
  mountPath: {{ $v.mountPath }}
  size: {{ $v.size | quote }}
  storageClass: {{ default $p.storageClass $v.spec.storageClass | quote }}
  existingClaim: {{ default "" $v.spec.existingClaim | quote }}
{{- end }}
{{- end -}}

{{/* The claim templates the StatefulSet gets (volumes without existingClaim). */}}
{{- define "mailserver.claimTemplates" -}}
{{- range (include "mailserver.persistentVolumes" . | fromYamlArray) }}
{{- if not .existingClaim }}
- metadata:
    name: {{ .name }}
    {{- with $.Values.persistence.annotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    accessModes: [ReadWriteOnce]
    {{- with .storageClass }}
    storageClassName: {{ . }}
    {{- end }}
    resources:
      requests:
        storage: {{ .size }}
{{- end }}
{{- end }}
{{- end -}}

{{/* What of a claim template the API server refuses to change: name, size, class, annotations. */}}
{{- define "mailserver.claimSummary" -}}
{{ .metadata.name }} {{ .spec.resources.requests.storage }} class={{ default "" .spec.storageClassName }} {{ toJson (default dict .metadata.annotations) }}
{{- end -}}

{{/*
The StatefulSet's claim templates cannot change once it exists (the API server refuses the
update, and Helm would stop half-way). Compared with the installed StatefulSet (Helm's
`lookup`; nothing to compare under `helm template`), a change fails the upgrade before anything
is applied, naming the manual step.
*/}}
{{- define "mailserver.checkClaimTemplates" -}}
{{- $existing := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "mailserver.fullname" .) -}}
{{- if $existing -}}
{{- $installed := list -}}
{{- range $existing.spec.volumeClaimTemplates -}}
{{- $installed = append $installed (include "mailserver.claimSummary" .) -}}
{{- end -}}
{{- $wanted := list -}}
{{- range (include "mailserver.claimTemplates" . | fromYamlArray) -}}
{{- $wanted = append $wanted (include "mailserver.claimSummary" .) -}}
{{- end -}}
{{- if not (eq (toJson $installed) (toJson $wanted)) -}}
{{- fail (printf "persistence: the StatefulSet %s has claim templates %s, these values want %s; claim templates cannot change in place. Nothing was applied. The manual step: resize or move the PVCs yourself (kubectl edit pvc, or existingClaim), then `kubectl delete statefulset %s --cascade=orphan` (the pod and its PVCs stay) and run the upgrade again; see docs/migrate-pvcs.md" (include "mailserver.fullname" .) (toJson $installed) (toJson $wanted) (include "mailserver.fullname" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the LB webhook's address comes from (poor_mans_k8s_lb.address). */}}
{{- define "mailserver.lbAddress" -}}
{{- $lb := .Values.poor_mans_k8s_lb -}}
{{- if eq $lb.address "fixed" -}}
{{- if not $lb.fixedAddress -}}
{{- fail "poor_mans_k8s_lb.address: fixed needs poor_mans_k8s_lb.fixedAddress (an IP address)" -}}
{{- end -}}
{{- toYaml (dict "source" "fixed" "value" $lb.fixedAddress) -}}
{{- else if eq $lb.address "hostIP" -}}
{{- toYaml (dict "source" "env" "env" "NODE_IP") -}}
{{- else -}}
{{- toYaml (dict "source" "node" "nodeAddressType" $lb.address) -}}
{{- end -}}
{{- end -}}

{{/* Whether the agent reads its Node object (and so needs NODE_NAME and `get` on nodes). */}}
{{- define "mailserver.readsNode" -}}
{{- if and .Values.poor_mans_k8s_lb.enabled (has .Values.poor_mans_k8s_lb.address (list "ExternalIP" "InternalIP")) -}}
true
{{- end -}}
{{- end -}}
