// The demo shell: plain ES module, no dependencies. It never sees a token:
// the session lives in an HttpOnly cookie, and the gateway adds the bearer
// token to /api calls on the way to the API.

const $ = (id) => document.getElementById(id);

async function getJSON(path) {
	const res = await fetch(path, {
		credentials: "same-origin",
		headers: { Accept: "application/json" },
	});
	let body = null;
	try {
		body = await res.json();
	} catch {
		// not JSON
	}
	return { status: res.status, body };
}

function show(id, { status, body }) {
	const el = $(id);
	el.textContent = `${status}\n${JSON.stringify(body, null, 2)}`;
	el.classList.toggle("error", status >= 400);
}

async function main() {
	const user = await getJSON("/auth/user?touch=false");
	if (user.status === 401) {
		$("who").textContent = "Not logged in.";
		const login = $("login");
		if (user.body && user.body.login_url) {
			login.href = user.body.login_url;
		}
		login.hidden = false;
		return;
	}
	if (user.status !== 200) {
		show("who", user);
		return;
	}
	const u = user.body;
	const name = u.name || u.preferred_username || u.email || u.sub;
	$("who").textContent = `Logged in as ${name} (sub ${u.sub}), scopes: ${(u.scopes || []).join(" ") || "none"}`;
	if (u.expires_at) {
		const at = (v) => new Date(typeof v === "number" ? v * 1000 : v).toLocaleString();
		$("expiry").textContent = `Session ends ${at(u.expires_at)}` +
			(u.idle_expires_at ? `, or when idle after ${at(u.idle_expires_at)}` : "");
	}
	$("logout").hidden = false;

	show("me", await getJSON("/api/me"));
	show("recipes", await getJSON("/api/recipes"));
}

main().catch((err) => {
	$("who").textContent = `Error: ${err}`;
	$("who").classList.add("error");
});
