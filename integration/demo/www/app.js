// The demo shell: plain ES modules, no dependencies. It never sees a token:
// the session lives in an HttpOnly cookie, and the gateway adds the bearer
// token to /api calls on the way to the API.
//
// It asks the gateway who the user is (/auth/user) and which
// micro-frontends they may load (/applications), then imports each one's
// entry and calls its mount(el, ctx) with a card to render into. It keeps
// listening to /auth/session, so a logout in another tab (or anywhere
// else) shows here within seconds.

const $ = (id) => document.getElementById(id);

// h builds an element. Text is always set as text, never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
	const el = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs)) {
		if (v === false || v == null) continue;
		if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
		else el.setAttribute(k, v === true ? "" : String(v));
	}
	el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
	return el;
}

// api calls the gateway and never throws: it returns {ok, status, body,
// requestId}; status 0 means no answer at all.
export async function api(path, { method = "GET", body } = {}) {
	const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
	if (body !== undefined) {
		init.headers["Content-Type"] = "application/json";
		init.body = JSON.stringify(body);
	}
	let res;
	try {
		res = await fetch(path, init);
	} catch (err) {
		return { ok: false, status: 0, body: null, requestId: "", error: String(err) };
	}
	let data = null;
	try {
		data = await res.json();
	} catch {
		// not JSON
	}
	const requestId = (data && typeof data.request_id === "string" && data.request_id) ||
		res.headers.get("X-Request-ID") || "";
	return { ok: res.ok, status: res.status, body: data, requestId };
}

// loginHref is where to log in again and come back to this page. It only
// ever points at this origin, whatever a response said.
function loginHref(body) {
	let u;
	try {
		u = new URL((body && body.login_url) || "/auth/login", location.origin);
	} catch {
		u = null;
	}
	if (!u || u.origin !== location.origin) u = new URL("/auth/login", location.origin);
	u.searchParams.set("return_to", location.pathname + location.search);
	return u.pathname + u.search;
}

// problem renders a failed call as a message a person can act on, with the
// request id to quote to the operators.
export function problem(res) {
	const b = (res.body && typeof res.body === "object") ? res.body : {};
	const box = h("div", { class: "problem" });
	const say = (title, ...rest) => box.append(h("strong", {}, title), ...rest);
	switch (res.status) {
		case 401:
			if (b.error === "insufficient_user_authentication") {
				// RFC 9470: logged in, but not strongly or recently enough.
				say("Confirm it's you.", h("p", {}, h("a", { href: loginHref(b) }, "Log in again"),
					" with a stronger or more recent login, and you will come back here."));
				break;
			}
			say("Your session ended — log in again.",
				h("p", {}, h("a", { href: loginHref(b) }, "Log in"), " and you will come back here."));
			break;
		case 403: {
			const missing = b.missing || b.scope;
			say("Not allowed.", h("p", {}, missing
				? ["This needs ", h("code", {}, String(missing)), ", which your account does not have."]
				: (b.detail || "Your account may not do this.")));
			break;
		}
		case 429:
		case 503: {
			box.classList.add("warn");
			const wait = Number(b.retry_after) > 0 ? ` in ${Number(b.retry_after)} s` : " in a moment";
			say(`Busy — try again${wait}.`, h("p", {}, b.detail || (res.status === 429
				? "Too many requests from your account."
				: "A service the portal needs is unavailable.")));
			break;
		}
		case 0:
			box.classList.add("warn");
			say("No answer from the gateway — try again.", h("p", {}, res.error || ""));
			break;
		default:
			say(`Something went wrong (${res.status}).`, h("p", {}, b.detail || b.error_description || b.title || ""));
	}
	box.append(h("div", { class: "rid" }, "Request id: ", h("code", {}, res.requestId || "none")));
	return box;
}

function showNotice(el) {
	const n = $("notice");
	n.replaceChildren(el);
	n.hidden = false;
}

function at(v) {
	const d = new Date(typeof v === "number" ? v * 1000 : v);
	return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function sessionText(name, st) {
	const idle = st.idle_expires_at ? `, or at ${at(st.idle_expires_at)} if idle` : "";
	return `Logged in as ${name}. Your session ends at ${at(st.expires_at)}${idle}.`;
}

function displayName(u) {
	return u.name || u.preferred_username || u.email || u.sub;
}

function renderUser(u) {
	const name = displayName(u);
	const scopes = Array.isArray(u.scopes) ? u.scopes : [];
	$("who").replaceChildren(
		h("div", { class: "name", title: `sub ${u.sub}` }, name),
		h("div", { class: "chips", "aria-label": "Your scopes" },
			scopes.length ? scopes.map((s) => h("span", { class: "chip" }, s)) : h("span", { class: "chip" }, "no scopes")),
	);
	$("logout").hidden = false;
	if (u.expires_at) $("session").textContent = sessionText(name, u);
}

// signedOut takes the user's data off the page and says why, with the way
// back in: the session ended elsewhere (another tab's logout, the
// provider, an operator, a timeout).
function signedOut() {
	$("who").textContent = "";
	$("logout").hidden = true;
	$("session").textContent = "";
	$("nav").replaceChildren();
	$("apps").replaceChildren();
	showNotice(h("div", { id: "signed-out", "data-testid": "signed-out", class: "problem" },
		h("strong", {}, "Signed out"),
		h("p", {}, "Your session ended — in another tab, on another device, or it timed out. ",
			h("a", { href: loginHref(null) }, "Log in again"), ".")));
}

// watchSession listens to the gateway's session events, which never
// extend the session: `session` tells its ends (they move when another tab
// uses it), `ended` that it is over. EventSource reconnects by itself
// after a dropped stream; when the gateway refuses the stream (401, 503)
// it gives up, and one plain poll tells an ended session from an outage.
function watchSession(name) {
	if (typeof EventSource !== "function") return pollSession(name);
	const es = new EventSource("/auth/session");
	es.addEventListener("session", (e) => {
		try {
			$("session").textContent = sessionText(name, JSON.parse(e.data));
		} catch {
			// not ours
		}
	});
	es.addEventListener("ended", async () => {
		es.close();
		// `ended` is about the session this stream was opened on; a login
		// in another tab may have replaced it, and the browser's cookie now
		// names the new one. Ask once with the current cookie.
		const res = await api("/auth/session");
		if (res.ok) watchSession(name);
		else if (res.status === 401) signedOut();
		else setTimeout(() => watchSession(name), 5000);
	});
	es.addEventListener("error", async () => {
		if (es.readyState !== EventSource.CLOSED) return; // reconnecting
		const res = await api("/auth/session");
		if (res.status === 401) signedOut();
		else setTimeout(() => watchSession(name), 5000);
	});
}

// pollSession is the polling contract, for browsers without EventSource:
// every 5 s, without extending the session.
function pollSession(name) {
	const timer = setInterval(async () => {
		const res = await api("/auth/session");
		if (res.status === 401) {
			clearInterval(timer);
			signedOut();
		} else if (res.ok) {
			$("session").textContent = sessionText(name, res.body);
		}
	}, 5000);
}

// isCurrent reports whether this page is the app's route.
function isCurrent(route) {
	const p = location.pathname;
	return p === route || (route !== "/" && p.startsWith(route.replace(/\/$/, "") + "/"));
}

// mountApp imports one application and mounts it into its card.
async function mountApp(app, ctx, body) {
	try {
		const mod = await import(app.entry);
		if (typeof mod.mount !== "function") throw new Error(`${app.entry} exports no mount(el, ctx)`);
		await mod.mount(body, { ...ctx, app });
	} catch (err) {
		body.replaceChildren(h("div", { class: "problem" },
			h("strong", {}, "This application could not be loaded."),
			h("p", {}, String(err && err.message || err))));
	}
}

async function main() {
	const user = await api("/auth/user?touch=false");
	if (!user.ok) {
		$("who").textContent = "";
		showNotice(problem(user));
		return;
	}
	renderUser(user.body);
	watchSession(displayName(user.body));

	const list = await api("/applications");
	if (!list.ok) {
		showNotice(problem(list));
		return;
	}
	const apps = Array.isArray(list.body && list.body.applications) ? list.body.applications : [];
	const grid = $("apps");
	if (apps.length === 0) {
		grid.replaceWith(h("div", { class: "empty muted" }, "No applications for your account yet."));
		return;
	}

	// What every application gets: the shell's helpers, the user, and an
	// event bus to tell each other about changes.
	const ctx = { api, problem, h, user: user.body, events: new EventTarget() };
	const nav = $("nav");
	let current = null;
	const mounts = apps.map((app) => {
		const here = isCurrent(app.route);
		nav.append(h("a", { href: app.route, "aria-current": here ? "page" : false }, app.title));
		const body = h("div", { class: "body" }, h("p", { class: "muted" }, "Loading…"));
		const card = h("article", { class: here ? "card current" : "card", id: `app-${app.name}` },
			h("header", {},
				h("h2", {}, app.title, h("a", { href: app.route, title: "Open" }, app.route)),
				typeof app.description === "string" ? h("p", {}, app.description) : null),
			body);
		grid.append(card);
		if (here) current = card;
		return mountApp(app, ctx, body);
	});
	await Promise.allSettled(mounts);
	if (current) current.scrollIntoView({ block: "nearest" });
}

// A page restored from the back/forward cache (after logout, say) shows
// what it showed before: load it again, so the gateway decides what it may
// show now.
window.addEventListener("pageshow", (e) => {
	if (e.persisted) location.reload();
});

main().catch((err) => {
	showNotice(h("div", { class: "problem" }, h("strong", {}, "The portal failed to start."), h("p", {}, String(err))));
});
