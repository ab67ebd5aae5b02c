#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks the shipped monitoring configuration (deploy/monitoring/) with the real tools from
# Debian's prometheus and prometheus-alertmanager packages: promtool check config / rules,
# the rule unit tests, amtool check-config and the alert routing tree. Exits non-zero on
# any failure. Registered as the ctest test monitoring/config.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mon="$root/deploy/monitoring"
failures=0

for tool in promtool amtool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: $tool not found (install the Debian packages prometheus and prometheus-alertmanager:" \
             "scripts/install-deps.sh)" >&2
        exit 1
    fi
done

run() {
    echo "+ $*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        failures=$((failures + 1))
    fi
}

# Expected receivers of one alert (labels as key=value), in route order.
route() {
    want=$1
    shift
    run amtool config routes test --config.file="$mon/alertmanager.yml" --verify.receivers="$want" "$@"
}

run promtool check config "$mon/prometheus.yml"
run promtool check rules "$mon/rules/aimedres.yml"
run promtool test rules "$here/rules_test.yml"
run amtool check-config "$mon/alertmanager.yml"

# The rule unit tests must cover every alert of the rules file.
for alert in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$mon/rules/aimedres.yml"); do
    if ! grep -q "alertname: $alert\$" "$here/rules_test.yml"; then
        echo "FAILED: alert $alert has no test in rules_test.yml" >&2
        failures=$((failures + 1))
    fi
done

# Routing (deployment guide 2.3): critical pages and continues, model performance and data
# quality reach the ML team, warning and critical reach Slack, anything else the default.
route pagerduty-critical,ml-team-email,slack-alerts severity=critical category=model_performance \
    alertname=ModelAccuracyDrop model=alzheimer_classifier
route pagerduty-critical,slack-alerts severity=critical category=application alertname=HighErrorRate
route ml-team-email,slack-alerts severity=warning category=model_performance alertname=DataDriftDetected
route ml-team-email,slack-alerts severity=warning category=data_quality alertname=DataQualityLow
route slack-alerts severity=warning category=system alertname=HighMemoryUsage
route pagerduty-critical,slack-alerts severity=critical category=backup alertname=BackupStale
route pagerduty-critical,slack-alerts severity=critical category=system alertname=TLSCertificateExpiring
route slack-alerts severity=warning category=system alertname=TLSCertificateExpiring
route slack-alerts severity=warning category=audit alertname=SIEMForwardingBehind
route default-receiver severity=info category=system alertname=Informational

# No secret is written in the shipped file: Slack, PagerDuty and SMTP read theirs from files
# (*_file), so the configuration can be readable, versioned and reviewed.
if grep -Eq '^[[:space:]-]*(slack_api_url|routing_key|service_key|smtp_auth_password|api_url|bot_token):' \
        "$mon/alertmanager.yml"; then
    echo "FAILED: alertmanager.yml holds a secret inline; use the *_file form" >&2
    failures=$((failures + 1))
fi

# The Grafana dashboard is valid JSON and every PromQL expression in it parses.
if command -v /usr/bin/python3 >/dev/null 2>&1; then
    run /usr/bin/python3 "$here/check_dashboard.py" "$mon/grafana/aimedres-dashboard.json"
fi

if [ "$failures" -ne 0 ]; then
    echo "check.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "check.sh: all monitoring configuration checks passed"
