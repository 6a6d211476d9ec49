// Hover tooltip with a token's activation (the title attribute holds it too, for no-JS readers).
(function () {
  const tip = document.createElement("div");
  tip.id = "tip";
  document.body.appendChild(tip);
  document.addEventListener("mouseover", (ev) => {
    const t = ev.target.closest(".tok");
    if (!t) { tip.style.display = "none"; return; }
    tip.textContent = "activation " + t.title;
    tip.style.display = "block";
  });
  document.addEventListener("mousemove", (ev) => {
    tip.style.left = ev.clientX + 12 + "px";
    tip.style.top = ev.clientY + 14 + "px";
  });
})();
