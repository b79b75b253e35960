#!/usr/bin/env bash
# Adds a PdSync trigger for any object: ./scripts/new-trigger.sh Escalation__c
# Writes force-app/main/default/triggers/PdSync<Name>Trigger.trigger and its -meta.xml.
set -euo pipefail

object="${1:?usage: $0 <sObject API name, e.g. Account or Escalation__c>}"
if [[ ! "$object" =~ ^[A-Za-z][A-Za-z0-9_]*$ ]]; then
    echo "error: '$object' is not an sObject API name" >&2
    exit 2
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
# Escalation__c -> Escalation, ns__Thing__c -> nsThing; trigger names hold at most 40 characters.
short="$(printf '%s' "$object" | sed -e 's/__c$//' -e 's/_//g')"
trigger="PdSync${short}Trigger"
if (( ${#trigger} > 40 )); then
    trigger="PdSync${short:0:$((40 - 13))}Trigger"
fi

dir="$here/force-app/main/default/triggers"
target="$dir/$trigger.trigger"
if [[ -e "$target" ]]; then
    echo "error: $target already exists" >&2
    exit 1
fi
sed -e "s/{{OBJECT}}/$object/g" -e "s/{{TRIGGER}}/$trigger/g" \
    "$here/templates/PdSyncObjectTrigger.trigger.template" >"$target"
cat >"$target-meta.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<ApexTrigger xmlns="http://soap.sforce.com/2006/04/metadata">
    <apiVersion>62.0</apiVersion>
    <status>Active</status>
</ApexTrigger>
XML
echo "wrote $target"
echo "Add a test that inserts and updates a $object with the bridge mocked (see PdSyncCalloutTest) so the trigger is covered."
