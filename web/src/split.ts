// The draggable divider between instructions and terminal: pointer drag,
// arrow keys (Shift for bigger steps), Home/End, double-click to reset.
// The split is a percentage kept in localStorage.

const KEY = "workshop.split";
const MIN = 20;
const MAX = 80;
const DEFAULT = 45;

export function setupSplit(layout: HTMLElement, divider: HTMLElement, onChange: () => void): void {
  let value = Number(localStorage.getItem(KEY) ?? DEFAULT);
  if (!Number.isFinite(value)) value = DEFAULT;

  const apply = (v: number, save = true): void => {
    value = Math.round(Math.min(MAX, Math.max(MIN, v)));
    layout.style.setProperty("--split", `${value}%`);
    divider.setAttribute("aria-valuenow", String(value));
    divider.setAttribute("aria-valuetext", `Instructions ${value}%, terminal ${100 - value}%`);
    if (save) {
      try {
        localStorage.setItem(KEY, String(value));
      } catch {
        // Private mode: the split just isn't remembered.
      }
    }
    onChange();
  };
  apply(value, false);

  divider.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    divider.setPointerCapture(ev.pointerId);
    divider.classList.add("dragging");
    document.body.classList.add("resizing");
    const rect = layout.getBoundingClientRect();
    const move = (e: PointerEvent): void => apply(((e.clientX - rect.left) / rect.width) * 100);
    const up = (): void => {
      divider.classList.remove("dragging");
      document.body.classList.remove("resizing");
      divider.removeEventListener("pointermove", move);
      divider.removeEventListener("pointerup", up);
      divider.removeEventListener("pointercancel", up);
    };
    divider.addEventListener("pointermove", move);
    divider.addEventListener("pointerup", up);
    divider.addEventListener("pointercancel", up);
  });
  divider.addEventListener("keydown", (ev) => {
    const step = ev.shiftKey ? 10 : 2;
    const moves: Record<string, number> = {
      ArrowLeft: value - step,
      ArrowUp: value - step,
      ArrowRight: value + step,
      ArrowDown: value + step,
      Home: MIN,
      End: MAX,
    };
    if (ev.key in moves) {
      apply(moves[ev.key]);
      ev.preventDefault();
    }
  });
  divider.addEventListener("dblclick", () => apply(DEFAULT));
}
