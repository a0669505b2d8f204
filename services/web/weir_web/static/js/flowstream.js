// A page's view of one flow's events: the SSE stream of /api/v1/flows/{id}/events, every
// event type listened to and each event folded into a FlowState once.
//
// The server ends the stream after the flow's last terminal event (a retried flow runs on
// after its first end). Once it has ended, the stream is closed (an EventSource would
// reconnect forever) and the list's change feed is followed instead: when the flow moves
// again (`weir retry` from anywhere, also while the tab was hidden) the stream is opened
// again and what is new is folded in.

import { API, call, seg } from "./api.js";
import { followWhileVisible } from "./dom.js";
import { EVENT_TYPES, TERMINAL_FLOW_EVENTS } from "./model.js";

/**
 * @param {string} flowId
 * @param {import("./model.js").FlowState} state
 * @param {(event: any, moved: {changed: string[], added: any[]}) => void} onFold
 * @returns {{reopen: () => void, stop: () => void}}
 */
export function followFlow(flowId, state, onFold) {
  let source = null;
  let stopWatch = null;
  let ended = false;
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    const moved = state.fold(event);
    if (!moved) return;
    ended = TERMINAL_FLOW_EVENTS.has(event.type);
    onFold(event, moved);
  };
  const open = () => {
    source = new EventSource(`${API}/flows/${seg(flowId)}/events`);
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.onerror = () => {
      if (ended) watch(); // the server ended the stream at the flow's end: do not reconnect
    };
  };
  const close = () => {
    if (source) source.close();
    source = null;
    if (stopWatch) stopWatch();
    stopWatch = null;
  };
  const reopen = () => {
    if (source && !ended) return;
    close();
    open();
  };
  const watch = () => {
    close();
    const onChange = (message) => {
      if (JSON.parse(message.data).flow_id === flowId) reopen();
    };
    // The feed has no history: on each (re)connection, see whether the flow moved meanwhile.
    const onReady = async () => {
      try {
        if ((await call(`/flows/${seg(flowId)}`)).seq > state.lastSeq) reopen();
      } catch {
        /* the feed's next change or ready asks again */
      }
    };
    stopWatch = followWhileVisible(`${API}/flows`, { ready: onReady, change: onChange, resync: reopen });
  };
  open();
  return { reopen, stop: close };
}
