// The payments micro-frontend: the caller's payments (GET /api/payments)
// and a form to send one (POST /api/payments). The gateway wants a
// stronger login for it (acr mfa; for sending, at most five minutes old):
// until the session has one, /applications lists this app with step_up,
// and a refused call answers 401 insufficient_user_authentication with the
// login_url that asks the provider for it (RFC 9470).

export async function mount(el, ctx) {
	const { h, api, problem, app } = ctx;

	// The shell only ever follows same-origin login URLs.
	const sameOrigin = (href) => {
		try {
			const u = new URL(href, location.origin);
			if (u.origin !== location.origin) return null;
			u.searchParams.set("return_to", app.route);
			return u.pathname + u.search;
		} catch {
			return null;
		}
	};
	const stepUp = (loginURL, why) => h("div", { class: "stepup", "data-testid": "step-up" },
		h("strong", {}, "Confirm it's you."),
		h("p", {}, why, " "),
		h("a", { href: sameOrigin(loginURL) || "/auth/login", "data-testid": "step-up-login" }, "Verify with a second factor"));

	if (app.step_up) {
		el.replaceChildren(stepUp(app.step_up.login_url, "Payments need a stronger login than the one you used."));
		return;
	}

	const list = h("ul", { class: "list", "data-testid": "payments" });
	const to = h("input", { name: "to", placeholder: "Payee", maxlength: 60, required: true });
	const amount = h("input", { name: "amount", type: "number", min: "0.01", max: "10000", step: "0.01", placeholder: "Amount", required: true });
	const out = h("div", {});
	const form = h("form", {
		class: "row", onsubmit: async (e) => {
			e.preventDefault();
			const res = await api("/api/payments", { method: "POST", body: { to: to.value, amount: Number(amount.value) } });
			if (res.status === 401 && res.body && res.body.error === "insufficient_user_authentication") {
				out.replaceChildren(stepUp(res.body.login_url, "Sending money needs a login at most five minutes old."));
				return;
			}
			if (!res.ok) {
				out.replaceChildren(problem(res));
				return;
			}
			out.replaceChildren(h("p", { class: "muted", "data-testid": "paid" }, `Sent ${res.body.payment.amount} to ${res.body.payment.to}.`));
			form.reset();
			await load();
		},
	}, to, amount, h("button", { type: "submit" }, "Send"));
	el.replaceChildren(list, form, out);

	async function load() {
		const res = await api("/api/payments");
		if (!res.ok) {
			list.replaceChildren(h("li", {}, problem(res)));
			return;
		}
		const ps = Array.isArray(res.body && res.body.payments) ? res.body.payments : [];
		list.replaceChildren(...(ps.length
			? ps.map((p) => h("li", {}, `${p.amount} to ${p.to}`))
			: [h("li", { class: "muted" }, "No payments yet.")]));
	}
	await load();
}
