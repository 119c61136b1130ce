// A test OpenID Provider for caddy-bff's integration tests: panva's
// oidc-provider on 127.0.0.1 only, with pushed authorization requests
// (RFC 9126), its development login form (any login, any password), no
// consent prompt, and one confidential client. Configured by the
// environment: PORT, REDIRECT_URI, CLIENT_SECRET, REQUIRE_PAR ("1").
// It prints "listening <issuer>" once it serves.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const requirePAR = process.env.REQUIRE_PAR === '1';

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bff',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: {
    devInteractions: { enabled: true },
    pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: requirePAR },
    revocation: { enabled: true },
  },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, name: id }),
  }),
  // Grant what the client asks for: no consent page in the tests.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
    await grant.save();
    return grant;
  },
  cookies: { keys: ['caddy-bff-test-cookie-key-0123456789'] },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
