// A real OpenID Connect provider (the `oidc-provider` package) for
// Orgstack's sign-in tests and benchmark. The test harness starts it with
// `node tests/oidc/provider.js`; it listens on 127.0.0.1 (PORT, default any
// free port) and prints one line, `listening <issuer>`, when ready.
//
// Clients register themselves (Dynamic Client Registration, `POST /reg`), so
// every test app gets a client with its own redirect URL.
//
// Sign-in: `/interaction/<uid>` is a small form; posting `email` to
// `/interaction/<uid>/login` signs that account in (any email; an address
// starting with `unverified` has `email_verified: false`). Consent is granted
// to every client (first-party apps).
//
// Misbehaviour on purpose, for the relying party's checks:
// `POST /test/mode {"account": email, "mode": m}` changes the next ID tokens
// issued for that account: `tamper` (payload changed, signature kept),
// `audience` (re-signed for another client), `nonce` (re-signed with another
// nonce), `expired` (re-signed, expired an hour ago), `issuer` (re-signed by
// our key but naming another issuer), `none` (back to normal).
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.PORT || 0);

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'orgstack-test', alg: 'RS256', use: 'sig' };

const modes = new Map();

function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: id,
        email_verified: !id.startsWith('unverified'),
        name: id.split('@')[0],
      };
    },
  };
}

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

async function resign(payload) {
  return new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' })
    .sign(privateKey);
}

async function misbehave(idToken) {
  const [header, body, signature] = idToken.split('.');
  const claims = b64json(body);
  const mode = modes.get(claims.sub);
  switch (mode) {
    case 'tamper': {
      const changed = { ...claims, email: 'mallory@example.test' };
      return [header, Buffer.from(JSON.stringify(changed)).toString('base64url'), signature].join('.');
    }
    case 'audience':
      return resign({ ...claims, aud: 'some-other-client', azp: 'some-other-client' });
    case 'nonce':
      return resign({ ...claims, nonce: 'not-the-nonce-that-was-sent' });
    case 'expired': {
      const now = Math.floor(Date.now() / 1000);
      return resign({ ...claims, iat: now - 7200, exp: now - 3600 });
    }
    case 'issuer':
      return resign({ ...claims, iss: 'http://127.0.0.1:1/not-the-issuer' });
    default:
      return idToken;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [signingJwk] },
    findAccount: (ctx, id) => account(id),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Claims asked for by scope go into the ID token too (as most providers do).
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
    },
    pkce: { required: () => true },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['orgstack-test-provider-cookie-key'] },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  provider.proxy = false;

  provider.use(async (ctx, next) => {
    const login = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (login && ctx.method === 'GET' && !login[2]) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${details.uid}/login">
<label>Email <input name="email" type="email" autofocus></label>
<button type="submit">Sign in</button></form>`;
      return;
    }
    if (login && ctx.method === 'POST' && login[2]) {
      const form = new URLSearchParams(await readBody(ctx.req));
      const email = form.get('email');
      if (!email) {
        ctx.status = 400;
        ctx.body = 'email is required';
        return;
      }
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: email } }, { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    if (ctx.path === '/test/mode' && ctx.method === 'POST') {
      const { account: who, mode } = JSON.parse(await readBody(ctx.req));
      if (mode === 'none') modes.delete(who); else modes.set(who, mode);
      ctx.status = 204;
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: await misbehave(ctx.body.id_token) };
    }
  });

  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
  // The harness reads only that line: anything later goes to stderr.
  console.log = console.error;
  console.info = console.error;
  process.stdout.on('error', () => {});
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
