// The number box beside a slider clamps to [0, 1] and moves the slider, whose input
// event htmx listens to.
function knobsClamp(box) {
  var v = Math.min(1, Math.max(0, parseFloat(box.value) || 0));
  box.value = v.toFixed(2);
  var slider = box.previousElementSibling;
  slider.value = v;
  slider.dispatchEvent(new Event("input", {bubbles: true}));
}
