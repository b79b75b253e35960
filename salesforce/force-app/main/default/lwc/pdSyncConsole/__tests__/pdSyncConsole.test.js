import { createElement } from 'lwc';
import PdSyncConsole from 'c/pdSyncConsole';
import getLinkedIncidents from '@salesforce/apex/PdSyncConsoleController.linkedIncidents';
import escalateRecord from '@salesforce/apex/PdSyncConsoleController.escalate';
import getStatusPanel from '@salesforce/apex/PdSyncConsoleController.statusPanel';

jest.mock('@salesforce/apex/PdSyncConsoleController.linkedIncidents', () => ({ default: jest.fn() }), { virtual: true });
jest.mock('@salesforce/apex/PdSyncConsoleController.escalate', () => ({ default: jest.fn() }), { virtual: true });
jest.mock('@salesforce/apex/PdSyncConsoleController.statusPanel', () => ({ default: jest.fn() }), { virtual: true });

const RECORD_ID = '500000000000001AAA';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function incident(overrides = {}) {
    return {
        id: 'Q1ABC',
        number: 42,
        title: 'Checkout down',
        status: 'triggered',
        urgency: 'high',
        priority: { id: 'P1X', name: 'P1' },
        service: { id: 'PSVC1', name: 'Checkout' },
        assignees: [
            { id: 'PUSR1', name: 'Ada Lovelace' },
            { id: 'PUSR2', name: 'Grace Hopper' }
        ],
        html_url: 'https://acme.pagerduty.com/incidents/Q1ABC',
        created_at: '2026-12-07T10:00:00Z',
        latest_status_update: { message: 'Rolling back the 10:00 deploy', created_at: '2026-12-07T10:05:00Z' },
        ...overrides
    };
}

function list(...incidents) {
    return { incidents, fetched_at: '2026-12-07T10:06:00Z' };
}

/** What the controller's AuraHandledException looks like to the component. */
function apexError(message) {
    return { status: 500, body: { message } };
}

function mount(props = {}) {
    const element = createElement('c-pd-sync-console', { is: PdSyncConsole });
    Object.assign(element, { recordId: RECORD_ID, ...props });
    document.body.appendChild(element);
    return element;
}

/** Lets the Apex promises settle and the component re-render (fake timers do not fake promises). */
async function flush() {
    for (let i = 0; i < 10; i++) {
        // eslint-disable-next-line no-await-in-loop
        await Promise.resolve();
    }
}

const $ = (element, selector) => element.shadowRoot.querySelector(selector);
const $$ = (element, selector) => Array.from(element.shadowRoot.querySelectorAll(selector));
const text = (node) => node.textContent.replace(/\s+/g, ' ').trim();

afterEach(() => {
    while (document.body.firstChild) {
        document.body.removeChild(document.body.firstChild);
    }
    jest.clearAllMocks();
    jest.useRealTimers();
});

describe('console: linked incidents', () => {
    it('renders each incident: number, title linked to PagerDuty, status, urgency, priority, assignees, latest update', async () => {
        getLinkedIncidents.mockResolvedValue(list(incident()));
        const element = mount();
        await flush();

        expect(getLinkedIncidents).toHaveBeenCalledWith({ recordId: RECORD_ID });
        const rows = $$(element, '.console li.incident');
        expect(rows).toHaveLength(1);
        const row = rows[0];
        expect(text(row.querySelector('.number'))).toBe('#42');
        const title = row.querySelector('a.title');
        expect(text(title)).toBe('Checkout down');
        expect(title.href).toBe('https://acme.pagerduty.com/incidents/Q1ABC');
        expect(title.target).toBe('_blank');
        const status = row.querySelector('.status');
        expect(text(status)).toBe('Triggered');
        expect(status.classList).toContain('slds-theme_error');
        expect(text(row.querySelector('.urgency-label'))).toBe('High urgency');
        expect(text(row.querySelector('.priority'))).toBe('P1');
        expect(text(row.querySelector('.service'))).toBe('Checkout');
        expect(text(row.querySelector('.assignees'))).toBe('Ada Lovelace, Grace Hopper');
        expect(text(row.querySelector('.update-message'))).toBe('Rolling back the 10:00 deploy');
        expect(row.querySelector('lightning-formatted-date-time.update-at').value).toBe('2026-12-07T10:05:00Z');
        expect($(element, '.console .empty')).toBeNull();
        expect($(element, '.console .error')).toBeNull();
    });

    it('shows an incident without priority, assignees or status update plainly', async () => {
        getLinkedIncidents.mockResolvedValue(
            list(incident({ status: 'acknowledged', urgency: 'low', priority: null, assignees: [], latest_status_update: null }))
        );
        const element = mount();
        await flush();

        const row = $(element, '.console li.incident');
        expect(text(row.querySelector('.status'))).toBe('Acknowledged');
        expect(text(row.querySelector('.urgency-label'))).toBe('Low urgency');
        expect(row.querySelector('.priority')).toBeNull();
        expect(text(row.querySelector('.assignees'))).toBe('Unassigned');
        expect(row.querySelector('.update')).toBeNull();
    });

    it('shows a spinner while loading', async () => {
        let answer;
        getLinkedIncidents.mockReturnValue(new Promise((resolve) => (answer = resolve)));
        const element = mount();
        await flush();

        expect($(element, '.console .loading lightning-spinner').alternativeText).toBe('Loading PagerDuty incidents');
        expect($(element, '.console .empty')).toBeNull();
        answer(list());
        await flush();
        expect($(element, '.console .loading')).toBeNull();
    });

    it('says so when no incident is linked', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        const element = mount();
        await flush();

        expect(text($(element, '.console .empty'))).toBe('No PagerDuty incidents are linked to this record.');
        expect($$(element, '.console li.incident')).toHaveLength(0);
    });

    it.each([
        'PagerDuty is not reachable right now. Try again in a minute.',
        'The bridge is not set up in this org yet — ask your Salesforce admin.',
        'Too many requests; try again in 17 seconds.',
        'You do not have access to this record.',
        'You are not allowed to use the PagerDuty console — ask your Salesforce admin for the PdSync Agent permission set.'
    ])('shows the controller\'s words: %s', async (message) => {
        getLinkedIncidents.mockRejectedValue(apexError(message));
        const element = mount();
        await flush();

        const error = $(element, '.console .error');
        expect(text(error)).toBe(message);
        expect(error.getAttribute('role')).toBe('alert');
        expect($(element, '.console .empty')).toBeNull();
        expect($$(element, '.console li.incident')).toHaveLength(0);
    });

    it('shows a plain sentence, not a stack trace, for an error without a message', async () => {
        getLinkedIncidents.mockRejectedValue(new TypeError('Cannot read properties of undefined (reading "x")'));
        const element = mount();
        await flush();

        expect(text($(element, '.console .error'))).toBe('The PagerDuty console could not load. Try again in a minute.');
    });
});

describe('console: escalate to engineering', () => {
    async function openConfirmation(element) {
        $(element, 'lightning-button.escalate').click();
        await flush();
        return $(element, '.confirmation');
    }

    it('asks for confirmation with an urgency, sends one request while in flight, and shows the new incident', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        let answer;
        escalateRecord.mockReturnValue(new Promise((resolve) => (answer = resolve)));
        const element = mount();
        await flush();

        const confirmation = await openConfirmation(element);
        expect(confirmation).not.toBeNull();
        expect($(element, 'lightning-button.escalate').disabled).toBe(true);
        const urgency = $(element, 'lightning-radio-group.urgency');
        expect(urgency.value).toBe('high');
        urgency.dispatchEvent(new CustomEvent('change', { detail: { value: 'low' } }));
        await flush();

        const confirm = $(element, 'lightning-button.confirm');
        expect(confirm.label).toBe('Escalate');
        confirm.click();
        confirm.click(); // a double click
        await flush();

        expect(escalateRecord).toHaveBeenCalledTimes(1);
        const [{ recordId, requestId, urgency: sent }] = escalateRecord.mock.calls[0];
        expect(recordId).toBe(RECORD_ID);
        expect(requestId).toMatch(UUID);
        expect(sent).toBe('low');
        expect($(element, 'lightning-button.confirm').disabled).toBe(true);
        expect($(element, 'lightning-button.cancel').disabled).toBe(true);
        expect(text($(element, '.escalating'))).toBe('Escalating…');
        $(element, 'lightning-button.confirm').click(); // still in flight
        expect(escalateRecord).toHaveBeenCalledTimes(1);

        answer({ incident: incident({ id: 'Q2NEW', number: 43, title: 'Escalated: Checkout down', latest_status_update: null }), created: true });
        await flush();

        expect($(element, '.confirmation')).toBeNull();
        expect(text($(element, '.escalated-message'))).toBe('Incident #43 was created: engineering has been paged.');
        expect($(element, '.escalated-link').href).toBe('https://acme.pagerduty.com/incidents/Q1ABC');
        const rows = $$(element, '.console li.incident');
        expect(rows).toHaveLength(1);
        expect(text(rows[0].querySelector('.number'))).toBe('#43');
        expect(text(rows[0].querySelector('a.title'))).toBe('Escalated: Checkout down');
        expect($(element, '.console .empty')).toBeNull();
        expect($(element, 'lightning-button.escalate').disabled).toBe(false);
    });

    it('keeps the request id when the same escalation is retried, and makes a new one for a new escalation', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        escalateRecord
            .mockRejectedValueOnce(apexError('PagerDuty is not reachable right now. Try again in a minute.'))
            .mockResolvedValueOnce({ incident: incident(), created: false })
            .mockResolvedValueOnce({ incident: incident({ id: 'Q3', number: 44 }), created: true });
        const element = mount();
        await flush();

        await openConfirmation(element);
        $(element, 'lightning-button.confirm').click();
        await flush();
        expect(text($(element, '.escalation-error'))).toBe('PagerDuty is not reachable right now. Try again in a minute.');
        expect($(element, 'lightning-button.confirm').label).toBe('Try again');
        expect($(element, 'lightning-button.confirm').disabled).toBe(false);

        $(element, 'lightning-button.confirm').click();
        await flush();
        const first = escalateRecord.mock.calls[0][0].requestId;
        expect(escalateRecord.mock.calls[1][0].requestId).toBe(first);
        expect(text($(element, '.escalated-message'))).toBe('This escalation was already made: incident #42.');

        await openConfirmation(element);
        $(element, 'lightning-button.confirm').click();
        await flush();
        const second = escalateRecord.mock.calls[2][0].requestId;
        expect(second).toMatch(UUID);
        expect(second).not.toBe(first);
    });

    it('makes a new request id after a cancel: a failed attempt given up is not repeated', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        escalateRecord
            .mockRejectedValueOnce(apexError('PagerDuty is not reachable right now. Try again in a minute.'))
            .mockResolvedValue({ incident: incident(), created: true });
        const element = mount();
        await flush();

        await openConfirmation(element);
        $(element, 'lightning-button.confirm').click();
        await flush();
        $(element, 'lightning-button.cancel').click();
        await flush();
        expect($(element, '.confirmation')).toBeNull();
        expect($(element, 'lightning-button.escalate').disabled).toBe(false);

        await openConfirmation(element);
        expect($(element, '.escalation-error')).toBeNull();
        expect($(element, 'lightning-button.confirm').label).toBe('Escalate');
        $(element, 'lightning-button.confirm').click();
        await flush();
        expect(escalateRecord).toHaveBeenCalledTimes(2);
        expect(escalateRecord.mock.calls[1][0].requestId).toMatch(UUID);
        expect(escalateRecord.mock.calls[1][0].requestId).not.toBe(escalateRecord.mock.calls[0][0].requestId);
    });

    it('shows why an escalation is not possible', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        const message = 'Escalation is not set up yet (no PagerDuty service is chosen for it) — ask your Salesforce admin.';
        escalateRecord.mockRejectedValue(apexError(message));
        const element = mount();
        await flush();

        await openConfirmation(element);
        $(element, 'lightning-button.confirm').click();
        await flush();
        expect(text($(element, '.escalation-error'))).toBe(message);
        expect($(element, '.escalated')).toBeNull();
    });
});

describe('refresh', () => {
    it('polls every refreshSeconds while a linked incident is open and stops when all are resolved', async () => {
        jest.useFakeTimers();
        getLinkedIncidents
            .mockResolvedValueOnce(list(incident()))
            .mockResolvedValueOnce(list(incident({ status: 'acknowledged' })))
            .mockResolvedValue(list(incident({ status: 'resolved' })));
        const element = mount({ refreshSeconds: 15 });
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(1);

        jest.advanceTimersByTime(14999);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(1);
        jest.advanceTimersByTime(1);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(2);
        expect(text($(element, '.console .status'))).toBe('Acknowledged');

        jest.advanceTimersByTime(15000);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(3);
        expect(text($(element, '.console .status'))).toBe('Resolved');
        expect(jest.getTimerCount()).toBe(0);

        jest.advanceTimersByTime(10 * 15000);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(3);
    });

    it('does not poll when nothing is open, and uses 30 s by default', async () => {
        jest.useFakeTimers();
        getLinkedIncidents.mockResolvedValue(list(incident({ status: 'resolved' })));
        mount();
        await flush();
        expect(jest.getTimerCount()).toBe(0);
        jest.advanceTimersByTime(120000);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(1);

        document.body.removeChild(document.body.firstChild);
        jest.clearAllMocks();
        getLinkedIncidents.mockResolvedValue(list(incident()));
        mount();
        await flush();
        jest.advanceTimersByTime(29999);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(1);
        jest.advanceTimersByTime(1);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(2);
    });

    it('stops when the component leaves the page', async () => {
        jest.useFakeTimers();
        getLinkedIncidents.mockResolvedValue(list(incident()));
        const element = mount();
        await flush();
        expect(jest.getTimerCount()).toBe(1);

        document.body.removeChild(element);
        expect(jest.getTimerCount()).toBe(0);
        jest.advanceTimersByTime(300000);
        await flush();
        expect(getLinkedIncidents).toHaveBeenCalledTimes(1);
    });

    it('keeps polling through a failed refresh and recovers', async () => {
        jest.useFakeTimers();
        getLinkedIncidents
            .mockResolvedValueOnce(list(incident()))
            .mockRejectedValueOnce(apexError('PagerDuty is not reachable right now. Try again in a minute.'))
            .mockResolvedValue(list(incident({ status: 'resolved' })));
        const element = mount();
        await flush();

        jest.advanceTimersByTime(30000);
        await flush();
        expect(text($(element, '.console .error'))).toBe('PagerDuty is not reachable right now. Try again in a minute.');

        jest.advanceTimersByTime(30000);
        await flush();
        expect($(element, '.console .error')).toBeNull();
        expect(text($(element, '.console .status'))).toBe('Resolved');
        expect(getLinkedIncidents).toHaveBeenCalledTimes(3);
    });

    it('starts polling for an incident just escalated', async () => {
        jest.useFakeTimers();
        getLinkedIncidents.mockResolvedValue(list());
        escalateRecord.mockResolvedValue({ incident: incident(), created: true });
        const element = mount();
        await flush();
        expect(jest.getTimerCount()).toBe(0);

        $(element, 'lightning-button.escalate').click();
        await flush();
        $(element, 'lightning-button.confirm').click();
        await flush();
        expect(jest.getTimerCount()).toBe(1);
    });
});

describe('status panel', () => {
    it('lists the open incidents of the configured services with their latest status update', async () => {
        getStatusPanel.mockResolvedValue(
            list(incident(), incident({ id: 'Q9', number: 7, title: 'Login slow', status: 'acknowledged', service: { id: 'PSVC2', name: 'Login' } }))
        );
        const element = mount({ showConsole: false, showStatus: true, serviceIds: ' PSVC1, PSVC2 ,' });
        await flush();

        expect(getStatusPanel).toHaveBeenCalledWith({ serviceIds: ['PSVC1', 'PSVC2'] });
        expect(getLinkedIncidents).not.toHaveBeenCalled();
        expect($(element, '.console')).toBeNull();
        const rows = $$(element, '.status-panel li.incident');
        expect(rows.map((r) => text(r.querySelector('.number')))).toEqual(['#42', '#7']);
        expect(rows.map((r) => text(r.querySelector('.service')))).toEqual(['Checkout', 'Login']);
        expect(rows.map((r) => text(r.querySelector('.status')))).toEqual(['Triggered', 'Acknowledged']);
        expect(text(rows[0].querySelector('.update-message'))).toBe('Rolling back the 10:00 deploy');
        expect(rows[0].querySelector('a.title').href).toBe('https://acme.pagerduty.com/incidents/Q1ABC');
    });

    it('shows the console and the status panel together, the admin\'s services when none are set', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        getStatusPanel.mockResolvedValue(list());
        const element = mount({ showStatus: true });
        await flush();

        expect(getStatusPanel).toHaveBeenCalledWith({ serviceIds: [] });
        expect(text($(element, '.console .empty'))).toBe('No PagerDuty incidents are linked to this record.');
        expect(text($(element, '.status-panel .empty'))).toBe('No ongoing incidents on these services.');
    });

    it('shows the status panel\'s error in words', async () => {
        getStatusPanel.mockRejectedValue(apexError('Too many requests; try again in 30 seconds.'));
        const element = mount({ showConsole: false, showStatus: true });
        await flush();

        expect(text($(element, '.status-panel .error'))).toBe('Too many requests; try again in 30 seconds.');
    });

    it('is not shown by default', async () => {
        getLinkedIncidents.mockResolvedValue(list());
        const element = mount();
        await flush();

        expect($(element, '.status-panel')).toBeNull();
        expect(getStatusPanel).not.toHaveBeenCalled();
    });
});
