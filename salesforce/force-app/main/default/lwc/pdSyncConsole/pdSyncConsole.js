/*
 * PagerDuty on a record page: the incidents linked to the record (console), "Escalate to
 * engineering", and the open incidents of chosen services (status panel). Data comes from
 * PdSyncConsoleController (imperative calls), which asks the bridge (docs/console-api.md).
 *
 * While any incident shown is not resolved, everything shown is reloaded every refreshSeconds;
 * the timer stops when none is open and when the component leaves the page.
 */
import { LightningElement, api } from 'lwc';
import getLinkedIncidents from '@salesforce/apex/PdSyncConsoleController.linkedIncidents';
import escalateRecord from '@salesforce/apex/PdSyncConsoleController.escalate';
import getStatusPanel from '@salesforce/apex/PdSyncConsoleController.statusPanel';

const DEFAULT_REFRESH_SECONDS = 30;
/** Every refresh costs PagerDuty reads against the bridge's shared rate limit. */
const MIN_REFRESH_SECONDS = 10;
const UNKNOWN_ERROR = 'The PagerDuty console could not load. Try again in a minute.';

const STATUS_LABELS = { triggered: 'Triggered', acknowledged: 'Acknowledged', resolved: 'Resolved' };
const STATUS_THEMES = {
    triggered: 'slds-theme_error',
    acknowledged: 'slds-theme_warning',
    resolved: 'slds-theme_success'
};
const URGENCY_LABELS = { high: 'High urgency', low: 'Low urgency' };

/** The sentence to show for a failed Apex call: the controller's AuraHandledException message. */
function errorMessage(error) {
    const body = error && error.body;
    if (body && typeof body.message === 'string' && body.message) {
        return body.message;
    }
    return UNKNOWN_ERROR;
}

/** A v4 UUID: the bridge creates at most one incident per request id. */
function newRequestId() {
    const c = typeof crypto === 'undefined' ? undefined : crypto;
    if (c && typeof c.randomUUID === 'function') {
        return c.randomUUID();
    }
    const bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') {
        c.getRandomValues(bytes);
    } else {
        for (let i = 0; i < bytes.length; i++) {
            bytes[i] = Math.floor(Math.random() * 256);
        }
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** What the template shows of one incident of the bridge's answer. */
function view(incident) {
    const status = incident.status || '';
    const update = incident.latest_status_update;
    const assignees = (incident.assignees || []).map((a) => a.name).filter(Boolean);
    return {
        key: incident.id,
        id: incident.id,
        numberLabel: incident.number === undefined || incident.number === null ? '' : `#${incident.number}`,
        title: incident.title || '(no title)',
        url: incident.html_url,
        statusLabel: STATUS_LABELS[status] || status,
        statusClass: `slds-badge slds-m-left_x-small status ${STATUS_THEMES[status] || ''}`.trim(),
        urgencyLabel: URGENCY_LABELS[incident.urgency] || '',
        priorityLabel: (incident.priority && incident.priority.name) || '',
        serviceName: (incident.service && incident.service.name) || '',
        assigneesLabel: assignees.length ? assignees.join(', ') : 'Unassigned',
        createdAt: incident.created_at,
        hasUpdate: Boolean(update && update.message),
        updateMessage: update ? update.message : '',
        updateAt: update ? update.created_at : undefined,
        resolved: status === 'resolved'
    };
}

export default class PdSyncConsole extends LightningElement {
    @api recordId;
    /**
     * On unless turned off. The LWC compiler refuses a Boolean @api field that defaults to true
     * (LWC1099), so it is a getter and setter over a private field (App Builder sends true anyway,
     * the js-meta.xml default).
     */
    @api
    get showConsole() {
        return this.consoleOn;
    }
    set showConsole(value) {
        this.consoleOn = value !== false && value !== 'false';
    }
    @api showStatus = false;
    /** Comma-separated PagerDuty service ids; empty: the services the bridge's admin chose. */
    @api serviceIds;
    @api refreshSeconds = DEFAULT_REFRESH_SECONDS;

    linked = [];
    linkedLoading = false;
    linkedError;
    status = [];
    statusLoading = false;
    statusError;

    confirming = false;
    escalating = false;
    escalationError;
    escalated;
    urgency = 'high';
    urgencyOptions = [
        { label: 'High: page the on-call engineer now', value: 'high' },
        { label: 'Low: engineering looks at it in working hours', value: 'low' }
    ];
    /** One per intent to escalate: kept across a retry, new after a success or a cancel. */
    requestId;

    consoleOn = true;
    connected = false;
    timer;

    connectedCallback() {
        this.connected = true;
        this.refresh(true);
    }

    disconnectedCallback() {
        this.connected = false;
        this.stopTimer();
    }

    get consoleShown() {
        return this.showConsole && Boolean(this.recordId);
    }

    get linkedEmpty() {
        return this.linked.length === 0;
    }

    get statusEmpty() {
        return this.status.length === 0;
    }

    get escalateDisabled() {
        return this.confirming || this.escalating;
    }

    get confirmLabel() {
        return this.escalationError ? 'Try again' : 'Escalate';
    }

    get escalatedMessage() {
        if (!this.escalated) {
            return '';
        }
        const number = this.escalated.incident.numberLabel;
        return this.escalated.created
            ? `Incident ${number} was created: engineering has been paged.`
            : `This escalation was already made: incident ${number}.`;
    }

    get refreshMs() {
        const seconds = Number(this.refreshSeconds);
        return Math.max(MIN_REFRESH_SECONDS, Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_REFRESH_SECONDS) * 1000;
    }

    get services() {
        return (this.serviceIds || '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    }

    /** True while anything shown is open: the linked incidents not resolved, or the status panel's. */
    get anyOpen() {
        const linkedOpen = this.consoleShown && this.linked.some((i) => !i.resolved);
        const statusOpen = this.showStatus && this.status.length > 0;
        return linkedOpen || statusOpen;
    }

    async refresh(first) {
        this.stopTimer();
        const loads = [];
        if (this.consoleShown) {
            loads.push(this.loadLinked(first));
        }
        if (this.showStatus) {
            loads.push(this.loadStatus(first));
        }
        await Promise.all(loads);
        this.scheduleRefresh();
    }

    async loadLinked(first) {
        this.linkedLoading = first;
        try {
            const answer = await getLinkedIncidents({ recordId: this.recordId });
            this.linked = ((answer && answer.incidents) || []).map(view);
            this.linkedError = undefined;
        } catch (error) {
            // The last list is kept (not shown): while it has open incidents the refresh goes on,
            // so the console recovers by itself once PagerDuty answers again.
            this.linkedError = errorMessage(error);
        } finally {
            this.linkedLoading = false;
        }
    }

    async loadStatus(first) {
        this.statusLoading = first;
        try {
            const answer = await getStatusPanel({ serviceIds: this.services });
            this.status = ((answer && answer.incidents) || []).map(view);
            this.statusError = undefined;
        } catch (error) {
            this.statusError = errorMessage(error);
        } finally {
            this.statusLoading = false;
        }
    }

    scheduleRefresh() {
        if (!this.connected || this.timer || !this.anyOpen) {
            return;
        }
        // eslint-disable-next-line @lwc/lwc/no-async-operation
        this.timer = setTimeout(() => {
            this.timer = undefined;
            this.refresh(false);
        }, this.refreshMs);
    }

    stopTimer() {
        if (this.timer) {
            clearTimeout(this.timer);
            this.timer = undefined;
        }
    }

    openEscalation() {
        this.requestId = newRequestId();
        this.urgency = 'high';
        this.escalationError = undefined;
        this.escalated = undefined;
        this.confirming = true;
    }

    cancelEscalation() {
        this.confirming = false;
        this.escalationError = undefined;
        this.requestId = undefined;
    }

    changeUrgency(event) {
        this.urgency = event.detail.value;
    }

    async confirmEscalation() {
        // A second click while the first is in flight does nothing (the button is disabled too).
        if (this.escalating) {
            return;
        }
        this.escalating = true;
        this.escalationError = undefined;
        try {
            const answer = await escalateRecord({
                recordId: this.recordId,
                requestId: this.requestId,
                urgency: this.urgency
            });
            const incident = view(answer.incident);
            this.escalated = { incident, created: answer.created !== false };
            this.confirming = false;
            this.requestId = undefined;
            this.linked = [incident, ...this.linked.filter((i) => i.id !== incident.id)];
            this.scheduleRefresh();
        } catch (error) {
            // The same request id stays: "Try again" repeats this intent, and the bridge creates
            // at most one incident for it even if the first attempt did reach PagerDuty.
            this.escalationError = errorMessage(error);
        } finally {
            this.escalating = false;
        }
    }
}
