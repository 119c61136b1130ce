// The recipes micro-frontend: lists GET /api/recipes (recipes:read).
// Like every app of the demo portal it exports mount(el, ctx) and builds
// its view with the shell's helpers in ctx.

export async function mount(el, ctx) {
	const { h, api, problem, events } = ctx;
	const content = h("div", {}, h("p", { class: "muted" }, "Loading recipes…"));
	const note = h("span", { class: "muted small" });
	const refresh = h("button", { type: "button", onclick: () => load() }, "Refresh");
	el.replaceChildren(content, h("div", { class: "row" }, refresh, note));

	async function load() {
		refresh.disabled = true;
		const res = await api("/api/recipes");
		refresh.disabled = false;
		if (!res.ok) {
			content.replaceChildren(problem(res));
			note.textContent = "";
			return;
		}
		const recipes = Array.isArray(res.body && res.body.recipes) ? res.body.recipes : [];
		content.replaceChildren(recipes.length
			? h("ul", { class: "list" }, recipes.map((r) =>
				h("li", {}, h("span", {}, r.title), r.author ? h("span", { class: "muted small" }, `added by ${r.author}`) : null)))
			: h("p", { class: "muted" }, "No recipes yet."));
		note.textContent = `${recipes.length} recipes, read as ${res.body.sub}`;
	}

	// The editor tells us when it added one.
	events.addEventListener("recipes:changed", () => load());
	await load();
}
