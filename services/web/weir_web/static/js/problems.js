// A refusal of the API shown in a form or on a page: as text, every problem it listed.

import { h, replace } from "./dom.js";

/** Shows a refusal in `box` as text: the message, then every problem (path, message). */
export function showProblems(box, error, ...more) {
  const problems = (error.problems || []).map((p) => h("li", {}, [p.path && p.path !== "$" ? h("code", {}, p.path) : "", p.path && p.path !== "$" ? " " : "", p.message]));
  replace(box, h("p", {}, error.message), problems.length ? h("ul", {}, problems) : "", more);
}
