/**
 * Sends new and edited Case Comments to pd-sfdc-sync (they become incident notes). Comments the
 * bridge wrote itself ("[PagerDuty] ...") are skipped by PdSyncTriggerHandler.
 */
trigger PdSyncCaseCommentTrigger on CaseComment(after insert, after update) {
    PdSyncTriggerHandler.handle(Trigger.operationType, Trigger.oldMap, Trigger.newMap);
}
