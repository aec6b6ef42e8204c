#!/usr/bin/env bash
# The system packages `npm test` needs beyond Node, installed with apt-get (Debian/Ubuntu)
# when they are missing; prints what it installs and does nothing when all are there.
# Used by .ci/run and by the README's quick start. Run as root (or with sudo).
#   PostgreSQL 15 server        the clusters every suite starts (postgresql-15)
#   pgTAP + pg_prove            the database tests (postgresql-15-pgtap, libtap-parser-sourcehandler-pgtap-perl)
#   plpgsql_check               `supabase db lint` (postgresql-15-plpgsql-check)
#   pg_cron                     tests/outbox_schedule_pg_cron_test.ts (postgresql-15-cron)
#   aiosmtpd                    a third-party SMTP server for tests/aiosmtpd_outcomes_test.ts (python3-aiosmtpd)
#   Dovecot                     the IMAP server of tests/mailbox_test.ts and the local stack's mailbox (dovecot-imapd)
#   Chromium                    the headless browser the inbox and API reference page tests drive (chromium)
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/pgtap.control ] || need_apt+=(postgresql-15-pgtap)
[ -f /usr/share/postgresql/15/extension/plpgsql_check.control ] || need_apt+=(postgresql-15-plpgsql-check)
[ -f /usr/share/postgresql/15/extension/pg_cron.control ] || need_apt+=(postgresql-15-cron)
command -v pg_prove >/dev/null 2>&1 || need_apt+=(libtap-parser-sourcehandler-pgtap-perl)
/usr/bin/python3 -c "import aiosmtpd" >/dev/null 2>&1 || need_apt+=(python3-aiosmtpd)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -x /usr/sbin/dovecot ] || need_apt+=(dovecot-imapd)

if [ ${#need_apt[@]} -eq 0 ]; then
  echo "== test dependencies: all present"
  exit 0
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "== apt-get install ${need_apt[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
