import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { LABEL } from "./helper.js";

window.extLog = [];
app.registerExtension({
  name: "loom.fixture.menu",
  async init() { window.extLog.push("init"); },
  async setup() { window.extLog.push(`setup:${app.graph._nodes.length > 0}:${typeof api.fetchApi}`); },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "ExtFixtureNode") return;
    nodeType.prototype.fixturePatched = true;
  },
  nodeCreated(node) {
    if (node.comfyClass !== "ExtFixtureNode") return;
    node.addWidget("button", "Say hi", null, () => { node.title = "hi from the extension"; });
  },
  getCanvasMenuItems() {
    return [{ content: LABEL, callback: () => { window.extCount = app.graph._nodes.length; } }];
  },
  getNodeMenuItems(node) {
    return [{ content: "Fixture: mark node", callback: () => { node.title = "marked"; } }];
  },
});
