// Starts ReDoc on Comet's /redoc page (api/docs_pages.py, decision 0031).
// ReDoc injects its styles as <style> elements; the page's Content-Security-Policy allows them
// only with the nonce this script tag carries, so it is handed to ReDoc here. The nonce is read
// from the script element's `nonce` property: browsers hide the attribute's value from the DOM.
(function () {
  "use strict";
  var script = document.currentScript;
  document.body.style.margin = "0";
  document.body.style.padding = "0";
  window.Redoc.init(script.dataset.specUrl, { nonce: script.nonce }, document.getElementById("redoc"));
})();
