// Every chart states money as the pages do: thousands separators, the currency's decimals and its code, on
// the axis ticks and in the tooltips. A value is money when its dataset is labelled "... (USD)" or its
// axis is titled with a currency code. Runs after Chart.js is loaded and before any chart is drawn.
(function () {
  "use strict";
  if (!window.Chart) return;
  var CODE = /^[A-Z]{3}$/;
  var NO_DECIMALS = { JPY: true };

  function money(value, code) {
    var digits = NO_DECIMALS[code] ? 0 : 2;
    var text = new Intl.NumberFormat("en", { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
    return text + " " + code;
  }
  function codeOfLabel(label) {
    var found = /\(([A-Z]{3})\)\s*$/.exec(label || "");
    return found ? found[1] : null;
  }
  function codeOfScale(chart, axisId) {
    var scale = chart.options.scales && chart.options.scales[axisId];
    var title = scale && scale.title && scale.title.text;
    if (CODE.test(title || "")) return title;
    var datasets = chart.data.datasets.filter(function (set) { return (set.yAxisID || "y") === axisId; });
    var codes = datasets.map(function (set) { return codeOfLabel(set.label); }).filter(Boolean);
    return codes.length && codes.every(function (code) { return code === codes[0]; }) ? codes[0] : null;
  }

  var numeric = window.Chart.Ticks.formatters.numeric;
  window.Chart.defaults.scales.linear.ticks.callback = function (value, index, ticks) {
    var code = codeOfScale(this.chart, this.id);
    return code ? money(value, code) : numeric.call(this, value, index, ticks);
  };
  window.Chart.defaults.plugins.tooltip.callbacks.label = function (context) {
    var label = context.dataset.label || "";
    var code = codeOfLabel(label) || codeOfScale(context.chart, context.dataset.yAxisID || "y");
    var value = context.parsed && typeof context.parsed.y === "number" ? context.parsed.y : context.raw;
    return (label ? label + ": " : "") + (code ? money(value, code) : context.formattedValue);
  };
})();
