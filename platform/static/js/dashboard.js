/* Tribute dashboard: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  // Uploads: send the file with XHR so the bytes going up can be shown, then insert the new asset's row,
  // whose htmx poll follows the fingerprinting job until it is done.
  function enhanceUpload(form) {
    form.addEventListener("submit", function (event) {
      var input = form.querySelector("input[type=file]");
      if (!input || !input.files.length || !window.FormData) return;
      event.preventDefault();
      var limit = Number(input.getAttribute("data-max-bytes") || 0);
      var limitText = input.getAttribute("data-max-text") || "";
      var tooLarge = '<div class="alert alert-error" role="alert"><p>This file is too large: files up to ' + limitText + " can be uploaded.</p></div>";
      if (limit && input.files[0].size > limit) {
        form.querySelector("[data-upload-errors]").innerHTML = tooLarge;
        return;
      }
      var box = form.querySelector(".upload-progress");
      var bar = box.querySelector("progress");
      var percent = box.querySelector("[data-upload-percent]");
      var errors = form.querySelector("[data-upload-errors]");
      var button = form.querySelector("button[type=submit]");
      errors.innerHTML = "";
      box.hidden = false;
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var value = Math.round((100 * e.loaded) / e.total);
        bar.value = value;
        percent.textContent = value + "%";
      });
      xhr.addEventListener("load", function () {
        button.disabled = false;
        box.hidden = true;
        if (xhr.status === 201) {
          var list = document.getElementById("asset-list");
          var empty = document.getElementById("assets-empty");
          if (empty) empty.remove();
          var holder = document.createElement("ul");
          holder.innerHTML = xhr.responseText.trim();
          var row = holder.firstElementChild;
          list.appendChild(row);
          if (window.htmx) window.htmx.process(row);
          form.reset();
          // The counter and the "add its files next" banner follow the new file.
          var count = list.querySelectorAll(".asset").length;
          var counter = document.querySelector("[data-file-count]");
          if (counter) counter.textContent = count + (count === 1 ? " file" : " files");
          document.querySelectorAll(".messages .flash-success").forEach(function (flash) { flash.remove(); });
        } else if (xhr.status === 422) {
          errors.innerHTML = xhr.responseText;
        } else if (xhr.status === 413 && limitText) {
          errors.innerHTML = tooLarge;
        } else {
          errors.innerHTML = '<div class="alert alert-error" role="alert"><p>The upload did not go through. Try again in a moment.</p></div>';
        }
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        box.hidden = true;
        errors.innerHTML = '<div class="alert alert-error" role="alert"><p>The connection failed. Try again.</p></div>';
      });
      xhr.send(new FormData(form));
    });
  }

  // Copy a one-time secret to the clipboard.
  function enhanceCopy(button) {
    button.addEventListener("click", function () {
      var field = document.querySelector(button.getAttribute("data-copy"));
      var status = document.querySelector("[data-copy-status]");
      function done(ok) {
        if (status) status.textContent = ok ? "Copied to the clipboard." : "Select the key and copy it.";
        if (ok) button.textContent = "Copied ✓";
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () { done(false); });
      } else {
        field.select();
        done(document.execCommand && document.execCommand("copy"));
      }
    });
  }

  // The split sheet's running total.
  function enhanceSplit(form) {
    var output = form.querySelector("[data-split-total]");
    function update() {
      var hundredths = 0;
      form.querySelectorAll("input[name$='-percent']").forEach(function (input) {
        var value = parseFloat(input.value);
        if (!isNaN(value)) hundredths += Math.round(value * 100);
      });
      output.textContent = (hundredths / 100).toString() + "%";
      output.className = hundredths === 10000 ? "total-ok" : "total-bad";
    }
    form.addEventListener("input", update);
    update();
    // Rows are added freely (up to the formset's maximum), from the empty row the page carries.
    var add = form.querySelector("[data-split-add-row]");
    var template = form.querySelector("template[data-split-empty-row]");
    var total = form.querySelector("input[name$='-TOTAL_FORMS']");
    var maximum = form.querySelector("input[name$='-MAX_NUM_FORMS']");
    if (add && template && total) {
      add.addEventListener("click", function () {
        var index = parseInt(total.value, 10);
        if (maximum && index >= parseInt(maximum.value, 10)) return;
        var html = template.innerHTML.replace(/__prefix__/g, index).replace(/__number__/g, index + 1);
        form.querySelector("tbody").insertAdjacentHTML("beforeend", html);
        total.value = index + 1;
        var rows = form.querySelectorAll("tbody [data-split-row]");
        rows[rows.length - 1].querySelector("input").focus();
      });
    }
  }

  // Withdrawing a proposal asks first.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm-cancel");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function activityChart() {
    var canvas = document.getElementById("activity-chart");
    var source = document.getElementById("activity-data");
    if (!canvas || !source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var labels = data.labels.map(function (day) {
      return new Date(day + "T00:00:00").toLocaleDateString(undefined, { day: "numeric", month: "short" });
    });
    var style = getComputedStyle(document.documentElement);
    function colour(name) { return style.getPropertyValue(name).trim(); }
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          { label: "Works registered", data: data.works, backgroundColor: colour("--chart-1"), borderRadius: 4 },
          { label: "Files uploaded", data: data.assets, backgroundColor: colour("--chart-2"), borderRadius: 4 },
          { label: "Licences granted", data: data.grants, backgroundColor: colour("--chart-3"), borderRadius: 4 },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
        scales: {
          x: { grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0 } },
        },
      },
    });
    canvas.setAttribute("data-chart-ready", "true");
  }

  var PALETTE = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5"];

  function colours() {
    var style = getComputedStyle(document.documentElement);
    var fallback = ["#6d4aff", "#0ea5a4", "#f59e0b", "#ef4444", "#64748b"];
    return PALETTE.map(function (name, i) { return style.getPropertyValue(name).trim() || fallback[i]; });
  }

  function dayLabels(days) {
    return days.map(function (day) {
      return new Date(day + "T00:00:00").toLocaleDateString(undefined, { day: "numeric", month: "short" });
    });
  }

  // Amounts arrive in minor units (integers); the axes show whole units.
  function units(digits) { return function (minor) { return minor / Math.pow(10, digits); }; }

  // Earnings per day, stacked once by work and once by source.
  function earningsCharts() {
    var source = document.getElementById("earnings-data");
    if (!source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    if (!data) return;
    var palette = colours();
    document.querySelectorAll("canvas[data-earnings-chart]").forEach(function (canvas) {
      var series = data[canvas.getAttribute("data-earnings-chart")] || [];
      new window.Chart(canvas, {
        type: "bar",
        data: {
          labels: dayLabels(data.labels),
          datasets: series.map(function (item, i) {
            return { label: item.label, data: item.data.map(units(data.digits)), backgroundColor: palette[i % palette.length], borderRadius: 4 };
          }),
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
          scales: {
            x: { stacked: true, grid: { display: false } },
            y: { stacked: true, beginAtZero: true, title: { display: true, text: data.currency } },
          },
        },
      });
      canvas.setAttribute("data-chart-ready", "true");
    });
  }

  // Accesses (bars, left axis) and spend per currency (lines, right axis) per day.
  function usageChart() {
    var canvas = document.getElementById("usage-chart");
    var source = document.getElementById("usage-data");
    if (!canvas || !source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var palette = colours();
    // Chart.js draws a lower `order` on top: the spend lines go over the bars (the first dataset would
    // otherwise be drawn last and hide them), with points large enough to see on a single day.
    var datasets = [{ type: "bar", label: "Accesses", data: data.accesses, backgroundColor: palette[0], borderRadius: 4, yAxisID: "y", order: 2 }];
    Object.keys(data.spend).forEach(function (currency, i) {
      datasets.push({
        type: "line",
        label: "Spend (" + currency + ")",
        data: data.spend[currency].map(units(data.digits[currency])),
        borderColor: palette[(i + 1) % palette.length],
        backgroundColor: palette[(i + 1) % palette.length],
        borderWidth: 3,
        pointRadius: 5,
        pointHoverRadius: 7,
        tension: 0.2,
        yAxisID: "spend",
        order: 1,
      });
    });
    new window.Chart(canvas, {
      data: { labels: dayLabels(data.labels), datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
        scales: {
          x: { grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "accesses" } },
          spend: { position: "right", beginAtZero: true, grid: { display: false }, title: { display: true, text: "spend (" + Object.keys(data.spend).join(", ") + ")" } },
        },
      },
    });
    canvas.setAttribute("data-chart-ready", "true");
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-upload]").forEach(enhanceUpload);
    document.querySelectorAll("[data-copy]").forEach(enhanceCopy);
    document.querySelectorAll("form[data-split-sheet]").forEach(enhanceSplit);
    activityChart();
    earningsCharts();
    usageChart();
  });
})();
