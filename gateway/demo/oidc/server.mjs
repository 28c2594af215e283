// Local OpenID Connect provider for the data gateway's DEMO users.
//
// DEMO ONLY: the login page accepts a demo username without a password. Never expose this
// provider beyond the loopback interface and never use it for real people.
//
// It issues RFC 9068 JWT access tokens (header `typ: at+jwt`, RS256) for the gateway's resource
// indicator through the authorization code flow with PKCE, and ID tokens for the same login.
//
// Options (each also readable from the environment):
//   --port N            OIDC_PORT          TCP port on 127.0.0.1; 0 picks a free one (default 0)
//   --host H            OIDC_HOST          listen address (default 127.0.0.1)
//   --issuer URL        OIDC_ISSUER        issuer; default http://127.0.0.1:<port>
//   --state-dir DIR     OIDC_STATE_DIR     keys, cookie secret, listening.json (required)
//   --key-file FILE     OIDC_KEY_FILE      private signing JWKS (default <state-dir>/signing-key.json)
//   --users FILE        OIDC_USERS_FILE    demo users as JSON (required; written by oidc_provider.py)
//   --audience URN      OIDC_AUDIENCE      the gateway's resource indicator (urn:wiesbaden:data-gateway)
//   --extra-resource U  OIDC_EXTRA_RESOURCES  further resource indicators (comma separated in env)
//   --extra-key         OIDC_EXTRA_KEY=1   also load (or create once) a rotated key with a new `kid`;
//                                          the rotated key signs, the old one stays published
//   --token-ttl S       OIDC_TOKEN_TTL     access and ID token lifetime in seconds (default 900)
//
// When it listens it writes <state-dir>/listening.json ({"issuer", "port", "pid"}).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'gateway-cli';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const RESOURCE_SCOPE = 'gateway';
const SIGNING_ALG = 'RS256';

// ---------------------------------------------------------------------------------------------
// options

const { values: argv } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    issuer: { type: 'string' },
    'state-dir': { type: 'string' },
    'key-file': { type: 'string' },
    users: { type: 'string' },
    audience: { type: 'string' },
    'extra-resource': { type: 'string', multiple: true },
    'extra-key': { type: 'boolean' },
    'token-ttl': { type: 'string' },
  },
  strict: true,
});

const env = process.env;
const stateDir = argv['state-dir'] ?? env.OIDC_STATE_DIR;
if (!stateDir) {
  console.error('server.mjs: --state-dir (or OIDC_STATE_DIR) is required');
  process.exit(2);
}
fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });

const usersFile = argv.users ?? env.OIDC_USERS_FILE;
if (!usersFile) {
  console.error('server.mjs: --users (or OIDC_USERS_FILE) is required');
  process.exit(2);
}

const port = Number.parseInt(argv.port ?? env.OIDC_PORT ?? '0', 10);
const host = argv.host ?? env.OIDC_HOST ?? '127.0.0.1';
const audience = argv.audience ?? env.OIDC_AUDIENCE ?? 'urn:wiesbaden:data-gateway';
const extraResources = argv['extra-resource']
  ?? (env.OIDC_EXTRA_RESOURCES ? env.OIDC_EXTRA_RESOURCES.split(',').filter(Boolean) : []);
const resources = new Set([audience, ...extraResources]);
const extraKey = argv['extra-key'] ?? ['1', 'true', 'yes'].includes((env.OIDC_EXTRA_KEY ?? '').toLowerCase());
const keyFile = argv['key-file'] ?? env.OIDC_KEY_FILE ?? path.join(stateDir, 'signing-key.json');
const tokenTtl = Number.parseInt(argv['token-ttl'] ?? env.OIDC_TOKEN_TTL ?? '900', 10);

// ---------------------------------------------------------------------------------------------
// demo users: {"anna": {"sub": "...", "preferred_username": "anna", "office": ..., ...}, ...}

const users = JSON.parse(fs.readFileSync(usersFile, 'utf8'));
const usersBySub = new Map(Object.values(users).map((user) => [user.sub, user]));

// ---------------------------------------------------------------------------------------------
// keys: generated once, kept in the state dir so restarts keep the key (and the `kid`)

function writePrivateFile(file, text) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function rsaThumbprint(jwk) {
  // RFC 7638: required members in lexicographic order
  const canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

function loadOrCreateKey(file) {
  if (fs.existsSync(file)) {
    const jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
      throw new Error(`${file} holds no keys`);
    }
    return jwks.keys;
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  jwk.kid = rsaThumbprint(jwk);
  jwk.alg = SIGNING_ALG;
  jwk.use = 'sig';
  writePrivateFile(file, `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
  return [jwk];
}

const signingKeys = loadOrCreateKey(keyFile);
if (extraKey) {
  const rotatedFile = path.join(path.dirname(keyFile), `${path.basename(keyFile, '.json')}-rotated.json`);
  // the rotated key comes first, so it signs; the old key stays in the JWKS for tokens already out
  signingKeys.unshift(...loadOrCreateKey(rotatedFile));
}

function loadOrCreateSecret(file) {
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const secret = crypto.randomBytes(32).toString('base64url');
  writePrivateFile(file, `${secret}\n`);
  return secret;
}
const cookieSecret = loadOrCreateSecret(path.join(stateDir, 'cookie-secret'));

// ---------------------------------------------------------------------------------------------
// the minimal demo interaction (login by demo username, then consent)

const escapeHtml = (value) => String(value).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="de"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
<p><strong>Demo-Anmeldung:</strong> nur für die Demo-Benutzer, ohne Passwort. Nicht für echte Konten.</p>
${body}
</body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new errors.InvalidRequest('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interactions(ctx, next) {
  const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(ctx.path);
  if (!match) return next();
  const [, uid, action] = match;
  const provider = ctx.app;
  ctx.set('cache-control', 'no-store');

  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt } = details;

  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = page('Anmeldung', `
<form method="post" action="/interaction/${escapeHtml(uid)}/login" data-prompt="login">
  <label>Benutzername <input name="username" autocomplete="username" autofocus></label>
  <button type="submit">Anmelden</button>
</form>
<p>Demo-Benutzer: ${Object.keys(users).map(escapeHtml).join(', ')}</p>`);
    } else if (prompt.name === 'consent') {
      ctx.body = page('Zugriff erlauben', `
<p>Die Anwendung <code>${escapeHtml(details.params.client_id)}</code> möchte auf das Daten-Gateway zugreifen.</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm" data-prompt="consent">
  <button type="submit">Erlauben</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit">Ablehnen</button></form>`);
    } else {
      ctx.throw(501, `prompt ${prompt.name} is not supported by the demo`);
    }
    return undefined;
  }

  if (ctx.method !== 'POST' || !action) ctx.throw(405);

  if (action === 'abort') {
    return provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied', error_description: 'The user refused the request.',
    }, { mergeWithLastSubmission: false });
  }

  if (action === 'login') {
    if (prompt.name !== 'login') ctx.throw(400, 'this interaction does not ask for a login');
    const form = await readForm(ctx.req);
    const user = users[(form.get('username') ?? '').trim()];
    if (!user) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Anmeldung fehlgeschlagen', '<p>Unbekannter Demo-Benutzer.</p>');
      return undefined;
    }
    return provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: user.sub, amr: ['demo'] },
    }, { mergeWithLastSubmission: false });
  }

  // confirm (consent): grant what the client asked for, nothing more
  if (prompt.name !== 'consent') ctx.throw(400, 'this interaction does not ask for consent');
  const { grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return provider.interactionFinished(ctx.req, ctx.res, {
    consent: { grantId: await grant.save() },
  }, { mergeWithLastSubmission: true });
}

// ---------------------------------------------------------------------------------------------
// provider configuration

const GATEWAY_CLAIMS = ['office', 'roles', 'purposes', 'districts', 'clearance'];

function accessTokenClaims(user) {
  const claims = { preferred_username: user.preferred_username };
  for (const name of GATEWAY_CLAIMS) {
    if (user[name] !== undefined) claims[name] = user[name];
  }
  return claims;
}

function configuration() {
  return {
    clients: [{
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
      id_token_signed_response_alg: SIGNING_ALG,
    }],
    jwks: { keys: signingKeys },
    cookies: { keys: [cookieSecret] },
    scopes: ['openid', 'profile', RESOURCE_SCOPE],
    claims: { openid: ['sub'], profile: ['preferred_username'] },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf ?? audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (!resources.has(resourceIndicator)) throw new errors.InvalidTarget();
          return {
            scope: RESOURCE_SCOPE,
            audience: resourceIndicator,
            accessTokenTTL: tokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: SIGNING_ALG } },
          };
        },
      },
    },
    async findAccount(_ctx, sub) {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, preferred_username: user.preferred_username };
        },
      };
    },
    async extraTokenClaims(_ctx, token) {
      const user = token.accountId ? usersBySub.get(token.accountId) : undefined;
      return user ? accessTokenClaims(user) : undefined;
    },
    formats: {
      customizers: {
        jwt(_ctx, _token, jwt) {
          jwt.payload.nbf = jwt.payload.iat;
        },
      },
    },
    ttl: {
      AccessToken: tokenTtl,
      IdToken: tokenTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Fehler', `<pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// listen first (so port 0 works), then build the provider with the real issuer

const server = http.createServer();
server.on('error', (error) => {
  console.error(`server.mjs: ${error.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const actualPort = server.address().port;
  const issuer = argv.issuer ?? env.OIDC_ISSUER ?? `http://127.0.0.1:${actualPort}`;
  const provider = new Provider(issuer, configuration());
  provider.use(interactions);
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());

  const listening = path.join(stateDir, 'listening.json');
  writePrivateFile(listening, `${JSON.stringify({
    issuer, port: actualPort, pid: process.pid, kids: signingKeys.map((k) => k.kid),
  })}\n`);
  console.log(`demo OIDC provider listening: issuer=${issuer} signing kid=${signingKeys[0].kid}`);
});

function shutdown(signal) {
  console.log(`demo OIDC provider stopping (${signal})`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
