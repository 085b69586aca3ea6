// Knobs' own script, loaded from our origin (the Content-Security-Policy allows no
// inline script). The number box beside a slider shows its value; typing in the box
// clamps to [0, 1] and moves the slider, whose input event htmx listens to.
document.addEventListener("input", function (event) {
  var slider = event.target;
  if (slider.matches && slider.matches('.knob input[type="range"]')) {
    var box = slider.nextElementSibling;
    if (box) { box.value = Number(slider.value).toFixed(2); }
  }
});

document.addEventListener("change", function (event) {
  var box = event.target;
  if (!(box.matches && box.matches(".knob input.num"))) { return; }
  var v = Math.min(1, Math.max(0, parseFloat(box.value) || 0));
  box.value = v.toFixed(2);
  var slider = box.previousElementSibling;
  slider.value = v;
  slider.dispatchEvent(new Event("input", {bubbles: true}));
});
