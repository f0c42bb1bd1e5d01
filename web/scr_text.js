// Shows each SCR node's text output (captions, the side-by-side comparison, the diagnostic report,
// the written files) on the node itself, read-only, after it runs.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const TEXT_NODES = ["SCRCaption", "SCRCaptionCompare", "SCRDiagnose", "SCRSaveCaptions"];

app.registerExtension({
  name: "scr.nodeText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.includes(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text || []).join("\n\n");
      let widget = this.widgets?.find((w) => w.name === "scr_output");
      if (!widget) {
        widget = ComfyWidgets["STRING"](this, "scr_output", ["STRING", { multiline: true }], app).widget;
        widget.serialize = false; // display only: never saved into the workflow or sent as an input
        widget.options = { ...(widget.options || {}), serialize: false };
        if (widget.inputEl) {
          widget.inputEl.readOnly = true;
          widget.inputEl.classList.add("scr-output");
        }
      }
      widget.value = text;
      this.setDirtyCanvas?.(true, true);
    };
  },
});
