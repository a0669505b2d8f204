// Submit a flow (operators), as `weir submit` does: a spec pasted or uploaded, its declared
// params filled in, an optional id; POST /api/v1/flows, then the new flow's page. A rejection
// shows every problem the scheduler listed, as text; a duplicate links the flow that exists.

import { call, canWrite, seg } from "./api.js";
import { h, replace } from "./dom.js";
import { link } from "./ui.js";
import { showProblems } from "./problems.js";
import { specWithParams } from "./specform.js";

export async function submitView(root, _params, { navigate }) {
  root.append(h("h1", {}, "Submit a flow"));
  if (!canWrite()) {
    root.append(h("p", { class: "muted" }, "Your role may read flows but not submit them (an operator's token can)."));
    return;
  }
  const paramsBox = h("div", { class: "params", "data-params": "" });
  const problems = h("div", { class: "error", role: "alert", "data-submit-error": "" });
  const spec = specWithParams(paramsBox, 14, "The page cannot read its params");
  const id = h("input", { name: "id", placeholder: "assigned if left empty" });
  const button = h("button", { type: "submit", "data-action": "submit" }, "Submit");
  const form = h(
    "form",
    { class: "submit-flow" },
    spec.element,
    paramsBox,
    h("label", {}, h("span", {}, "Flow id (optional)"), id),
    problems,
    h("div", { class: "buttons" }, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    spec.flush(); // a spec changed just now, before its params were read: read them first
    const text = spec.text.value;
    const given = spec.values();
    const wanted = id.value.trim();
    replace(problems);
    // The text goes as it is written, with or without params and an id: the server reads it
    // as `weir submit` reads a file (YAML 1.1, its syntax errors naming the line). The page
    // reads it only to find the params to ask for.
    const plain = Object.keys(given).length === 0 && !wanted;
    if (!plain && !text.trim()) {
      showProblems(problems, { message: "Enter a flow spec first." });
      return;
    }
    button.disabled = true;
    try {
      const done = plain
        ? await call("/flows", { method: "POST", text })
        : await call("/flows", { method: "POST", body: { spec: text, params: given, ...(wanted ? { id: wanted } : {}) } });
      navigate(`/flows/${seg(done.flow_id)}`);
    } catch (error) {
      const detail = error.detail || {};
      const existing = detail.existing ? h("p", {}, "The flow that exists: ", link(`/flows/${seg(detail.existing)}`, detail.existing)) : "";
      const rejected = detail.flow_id ? h("p", {}, "The rejection is recorded as flow ", link(`/flows/${seg(detail.flow_id)}`, detail.flow_id), ".") : "";
      showProblems(problems, error, existing, rejected);
    } finally {
      button.disabled = false;
    }
  });
  root.append(
    h("p", { class: "muted" }, "As `weir submit`: the scheduler checks the spec and its params, and refuses it with every problem."),
    form,
  );
  spec.text.focus();
}
