/* Payout settings: sign the wallet challenge with a browser wallet (EIP-1193 `personal_sign`), or copy it
   to sign elsewhere. Without this file (or without a browser wallet) the form still works: paste the
   address and the signature by hand. */
(function () {
  "use strict";

  var box = document.querySelector("[data-wallet-sign]");
  var source = document.getElementById("wallet-message");
  if (!box || !source) return;
  var message = JSON.parse(source.textContent);
  var form = box.querySelector("[data-wallet-form]");

  function toHex(text) {
    var bytes = new TextEncoder().encode(text);
    var hex = "0x";
    for (var i = 0; i < bytes.length; i++) hex += bytes[i].toString(16).padStart(2, "0");
    return hex;
  }

  function showError(text) {
    var note = box.querySelector("[data-sign-error]");
    if (!note) {
      note = document.createElement("p");
      note.className = "error";
      note.setAttribute("role", "alert");
      note.setAttribute("data-sign-error", "");
      form.parentNode.insertBefore(note, form);
    }
    note.textContent = text;
  }

  var copy = box.querySelector("[data-copy-message]");
  if (copy && navigator.clipboard) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(message).then(function () {
        copy.textContent = "Copied";
      });
    });
  }

  var sign = box.querySelector("[data-sign]");
  if (!sign || !window.ethereum || typeof window.ethereum.request !== "function") return;
  sign.hidden = false;
  sign.addEventListener("click", function () {
    sign.disabled = true;
    window.ethereum
      .request({ method: "eth_requestAccounts" })
      .then(function (accounts) {
        if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
        var account = accounts[0];
        return window.ethereum
          .request({ method: "personal_sign", params: [toHex(message), account] })
          .then(function (signature) {
            form.querySelector("[name=address]").value = account;
            form.querySelector("[name=signature]").value = signature;
            form.submit();
          });
      })
      .catch(function (error) {
        sign.disabled = false;
        showError("The wallet did not sign: " + (error && error.message ? error.message : error));
      });
  });
})();
