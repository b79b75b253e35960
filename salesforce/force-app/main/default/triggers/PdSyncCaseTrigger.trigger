/**
 * Sends Case changes to pd-sfdc-sync. No logic here: see PdSyncTriggerHandler.
 */
trigger PdSyncCaseTrigger on Case(after insert, after update) {
    PdSyncTriggerHandler.handle(Trigger.operationType, Trigger.oldMap, Trigger.newMap);
}
