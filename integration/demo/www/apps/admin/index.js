// The admin micro-frontend: what the API has seen, from
// GET /api/admin/stats (admin).

const labels = [
	["recipes", "Recipes"],
	["callers", "Distinct callers"],
	["your_calls", "Your verified calls"],
	["verified", "Verified calls, everyone"],
	["all_requests", "Requests that reached the API"],
];

export async function mount(el, ctx) {
	const { h, api, problem } = ctx;
	const content = h("div", {}, h("p", { class: "muted" }, "Loading…"));
	const refresh = h("button", { type: "button", onclick: () => load() }, "Refresh");
	const note = h("span", { class: "muted small" }, "Requests the gateway refused never reach the API.");
	el.replaceChildren(content, h("div", { class: "row" }, refresh, note));

	async function load() {
		refresh.disabled = true;
		const res = await api("/api/admin/stats");
		refresh.disabled = false;
		if (!res.ok) {
			content.replaceChildren(problem(res));
			return;
		}
		const s = res.body || {};
		content.replaceChildren(h("dl", { class: "stats" },
			labels.map(([k, label]) => [h("dt", {}, label), h("dd", {}, String(s[k] ?? "–"))])));
	}
	await load();
}
