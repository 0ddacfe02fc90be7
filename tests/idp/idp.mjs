// A real OpenID provider for Gatehouse's SSO tests: oidc-provider (a certified
// implementation) with a login page that checks passwords and a consent page.
// Usage: node idp.mjs CONFIG.json   where CONFIG holds
//   {"port": N, "host": "127.0.0.1", "issuer": "http://127.0.0.1:N",
//    "clients": [oidc-provider client metadata...],
//    "accounts": {"alice": {"password": "...", "claims": {"email": ..., "groups": [...]}}},
//    "tls": {"cert": "/path.pem", "key": "/path.key"},   (optional)
//    "codeTtl": seconds an authorization code lives (optional),
//    "jwk": the RS256 signing key, a private JWK with its kid}
// Prints "ready" on stdout once listening. IDP_MODULES: where oidc-provider is installed.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// scripts/setup.sh installs the provider into a cache directory: IDP_MODULES names it.
const resolve = createRequire(join(process.env.IDP_MODULES, 'node_modules', 'x.js')).resolve;
const { default: Provider } = await import(pathToFileURL(resolve('oidc-provider')).href);

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts;


const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: [config.jwk] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
    profile: ['name', 'unix_user'],
  },
  conformIdTokenClaims: false, // the claims of the granted scopes go in the ID token
  ...(config.codeTtl ? { ttl: { AuthorizationCode: config.codeTtl } } : {}),
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account.claims }; } };
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><title>${title}</title></head><body>${body}</body></html>`;

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    res.setHeader('Content-Type', 'text/html');
    if (details.prompt.name === 'login') {
      res.end(page('Sign-in', `<form method="post" action="/interaction/${uid}/login">
<input name="username"/><input name="password" type="password"/><button type="submit">Sign in</button></form>`));
    } else {
      res.end(page('Authorize', `<form method="post" action="/interaction/${uid}/confirm">
<button type="submit">Continue</button></form>`));
    }
    return;
  }
  const form = await formBody(req);
  if (action === 'login') {
    const name = form.get('username') || '';
    if (!accounts[name] || accounts[name].password !== form.get('password')) {
      res.statusCode = 401;
      res.setHeader('Content-Type', 'text/html');
      res.end(page('Sign-in', `<p>invalid username or password for ${escape(name)}</p>`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: name } },
      { mergeWithLastSubmission: false });
    return;
  }
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } },
    { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const handler = (req, res) => {
  const m = /^\/interaction\/([\w-]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
  if (!m) return callback(req, res);
  interaction(req, res, m[1], m[2]).catch((err) => {
    res.statusCode = 400;
    res.end(page('Error', escape(err.message)));
  });
};
const server = config.tls
  ? https.createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, handler)
  : http.createServer(handler);
server.listen(config.port, config.host || '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
