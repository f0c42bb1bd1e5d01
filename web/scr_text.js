// Shows each SCR node's text output (captions, the side-by-side comparison, the diagnostic report,
// the files written, a folder load's report) on the node itself, read-only. Public extension API only
// (app.registerExtension, node.addDOMWidget), so it works on the classic canvas and on Nodes 2.0.
import { app } from "../../scripts/app.js";

const TEXT_NODES = ["SCRCaption", "SCRCaptionCompare", "SCRDiagnose", "SCRSaveCaptions", "SCRCaptionFolder",
  "SCRLoadImageFolder"];
const LABEL = "result"; // what people see above the box; the widget's name stays scr_output

function textWidget(node) {
  const panel = document.createElement("div");
  Object.assign(panel.style, { display: "flex", flexDirection: "column", gap: "2px", width: "100%",
                               height: "100%", boxSizing: "border-box" });
  const label = document.createElement("div");
  label.textContent = LABEL;
  label.className = "scr-output-label";
  Object.assign(label.style, { fontSize: "11px", opacity: "0.7", paddingLeft: "4px" });
  const box = document.createElement("textarea");
  box.readOnly = true;
  box.className = "comfy-multiline-input scr-output";
  box.placeholder = "appears here after the node runs";
  Object.assign(box.style, { flex: "1", width: "100%", minHeight: "64px", resize: "none", boxSizing: "border-box" });
  panel.append(label, box);
  const widget = node.addDOMWidget("scr_output", "scr_text", panel, {
    getValue: () => box.value,
    setValue: (value) => { box.value = value ?? ""; },
    serialize: false, // display only: never saved into the workflow or sent as an input
    getMinHeight: () => 90,
  });
  widget.label = LABEL;
  widget.serialize = false;
  return widget;
}

app.registerExtension({
  name: "scr.nodeText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.includes(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const made = onNodeCreated?.apply(this, arguments);
      textWidget(this); // from the start, so the node's size (and a workflow's layout) includes the box
      return made;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text || []).join("\n\n");
      const widget = this.widgets?.find((w) => w.name === "scr_output") || textWidget(this);
      widget.value = text;
      this.setDirtyCanvas?.(true, true);
    };
  },
});
