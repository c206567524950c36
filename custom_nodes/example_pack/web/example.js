// Frontend side of the example pack: an ES module loaded by the editor from /extensions/example_pack/.
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "loom.example_pack",
  async nodeCreated(node) {
    if (node.comfyClass === "ExampleShowText") {
      node.color = "#335";
    }
  },
});
