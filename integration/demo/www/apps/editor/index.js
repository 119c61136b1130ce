// The editor micro-frontend: adds a recipe with POST /api/recipes
// (recipes:write). The browser sends only its session cookie; the gateway
// checks the scope, then forwards with a JWT.

export function mount(el, ctx) {
	const { h, api, problem, events } = ctx;
	const input = h("input", {
		type: "text", name: "title", maxlength: 80, required: true,
		placeholder: "e.g. Lemon risotto", "aria-label": "Recipe title", autocomplete: "off",
	});
	const submit = h("button", { type: "submit", class: "primary" }, "Add recipe");
	const result = h("div", { "aria-live": "polite" });

	const form = h("form", {
		onsubmit: async (e) => {
			e.preventDefault();
			const title = input.value.trim();
			if (!title) return;
			submit.disabled = true;
			const res = await api("/api/recipes", { method: "POST", body: { title } });
			submit.disabled = false;
			if (!res.ok) {
				result.replaceChildren(problem(res));
				return;
			}
			const r = res.body && res.body.recipe || {};
			result.replaceChildren(h("p", { class: "success" }, `Added “${r.title}” (#${r.id}).`));
			input.value = "";
			events.dispatchEvent(new CustomEvent("recipes:changed", { detail: r }));
		},
	}, h("p", { class: "muted small" }, "New recipes appear in the Recipes app of everyone who may read them."),
	h("div", { class: "row" }, input, submit));

	el.replaceChildren(form, result);
}
