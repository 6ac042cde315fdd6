// The benchmark's peer: node-oidc-provider with CIBA in poll mode, one client_secret_basic
// client and its default in-memory adapter. POST /approve {auth_req_id} plays the user's
// approval on the authentication device (provider.backchannelResult).
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT || 3999);
const issuer = `http://127.0.0.1:${port}`;

// The quick-start adapter is an LRU of 1,000 entries, which would evict most of the pending
// requests a benchmark holds; this one keeps everything in a Map until it expires.
const stores = new Map();
class MapAdapter {
  constructor(name) {
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }
  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expires: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
  }
  async find(id) {
    const e = this.store.get(id);
    if (!e) return undefined;
    if (e.expires < Date.now()) { this.store.delete(id); return undefined; }
    return e.payload;
  }
  async findByUserCode() { return undefined; }
  async findByUid() { return undefined; }
  async consume(id) { const e = this.store.get(id); if (e) e.payload.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { this.store.delete(id); }
  async revokeByGrantId(grantId) {
    for (const [k, e] of this.store) if (e.payload.grantId === grantId) this.store.delete(k);
  }
}

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [{
    client_id: 'bench',
    client_secret: 'bench-secret',
    grant_types: ['urn:openid:params:grant-type:ciba'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_token_delivery_mode: 'poll',
  }],
  features: {
    devInteractions: { enabled: false },
    ciba: {
      enabled: true,
      deliveryModes: ['poll'],
      processLoginHint: async (ctx, loginHint) => loginHint,
      processLoginHintToken: async () => undefined,
      verifyUserCode: async () => {},
      validateBindingMessage: async () => {},
      validateRequestContext: async () => {},
      triggerAuthenticationDevice: async () => {},
    },
  },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  ttl: { BackchannelAuthenticationRequest: 3600 },
});

const callback = provider.callback();

async function approve(req, res) {
  let body = '';
  for await (const chunk of req) body += chunk;
  const id = new URLSearchParams(body).get('auth_req_id');
  try {
    const request = await provider.BackchannelAuthenticationRequest.find(id);
    const grant = new provider.Grant({ clientId: request.clientId, accountId: request.accountId });
    grant.addOIDCScope('openid');
    await grant.save();
    await provider.backchannelResult(request, grant);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"approved"}');
  } catch (e) {
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
  }
}

http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/approve') return approve(req, res);
  return callback(req, res);
}).listen(port, '127.0.0.1', () => console.log(`peer listening on ${issuer}`));
