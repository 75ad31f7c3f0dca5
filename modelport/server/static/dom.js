// The small DOM helpers the pages' modules share. Text is only ever set as text.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new element with these attributes and, if given, this text (never parsed as HTML). */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A table row of these cells: a node is put in its cell, anything else set as its text. */
export function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? "";
    tr.append(td);
  }
  return tr;
}

/**
 * Keep each slider under `root` (an `input[type=range]` whose `data-for` names its number
 * input) and its number input showing the same value; `onSlide` runs after a slider moved.
 */
export function pairSliders(root, onSlide) {
  for (const range of root.querySelectorAll("input[type=range][data-for]")) {
    const number = $(range.dataset.for);
    range.addEventListener("input", () => {
      number.value = range.value;
      onSlide?.();
    });
    number.addEventListener("input", () => {
      if (number.value !== "") range.value = number.value;
    });
  }
}
