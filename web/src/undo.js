// Undo / redo over whole-graph snapshots (the view, i.e. pan and zoom, is not part of a snapshot).

const LIMIT = 60;

function snapshot(graph) {
  const data = graph.serialize();
  if (data.extra) delete data.extra.ds;
  return JSON.stringify(data);
}

/** Records a snapshot whenever `check()` sees the graph changed; `undo()` / `redo()` restore them. */
export class UndoHistory {
  constructor(graph, restore) {
    this.graph = graph;
    this.restore = restore;
    this.past = [];
    this.future = [];
    this.current = snapshot(graph);
    this.restoring = false;
  }

  /** Starts a new history from the current graph (after loading a document). */
  reset() {
    this.past = [];
    this.future = [];
    this.current = snapshot(this.graph);
  }

  check() {
    if (this.restoring) return;
    const now = snapshot(this.graph);
    if (now === this.current) return;
    this.past.push(this.current);
    if (this.past.length > LIMIT) this.past.shift();
    this.future = [];
    this.current = now;
  }

  undo() { this.#step(this.past, this.future); }
  redo() { this.#step(this.future, this.past); }

  #step(from, to) {
    this.check();
    if (!from.length) return;
    to.push(this.current);
    this.current = from.pop();
    this.restoring = true;
    try {
      this.restore(JSON.parse(this.current));
      // A restored graph may serialise slightly differently (order, defaults): take it as the new baseline.
      this.current = snapshot(this.graph);
    } finally {
      this.restoring = false;
    }
  }
}
