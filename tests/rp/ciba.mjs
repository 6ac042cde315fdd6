// A standard relying party: openid-client drives CIBA poll mode against the server exactly as
// its documentation shows. Run by tests/e2e/s11_openid_client.rs, which plays the user.
//
// Environment: ISSUER, CLIENT_ID, AUTH (client_secret_basic | private_key_jwt), CLIENT_SECRET
// or CLIENT_JWK (a private P-256 JWK with its kid), ID_TOKEN_ALG, LOGIN_HINT.
// Prints one JSON line on stderr when the authentication has started, and the result on stdout.
import * as client from 'openid-client';

const env = process.env;

async function clientAuth() {
  if (env.AUTH === 'client_secret_basic') return client.ClientSecretBasic(env.CLIENT_SECRET);
  if (env.AUTH === 'private_key_jwt') {
    const jwk = JSON.parse(env.CLIENT_JWK);
    const key = await crypto.subtle.importKey(
      'jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    return client.PrivateKeyJwt({ key, kid: jwk.kid });
  }
  throw new Error(`unknown AUTH ${env.AUTH}`);
}

const config = await client.discovery(
  new URL(env.ISSUER),
  env.CLIENT_ID,
  { token_endpoint_auth_method: env.AUTH, id_token_signed_response_alg: env.ID_TOKEN_ALG },
  await clientAuth(),
  { execute: [client.allowInsecureRequests] },
);

const cc = await client.clientCredentialsGrant(config, { scope: 'permissions/ciba' });

const started = await client.initiateBackchannelAuthentication(config, {
  scope: 'openid profile',
  login_hint: env.LOGIN_HINT,
  binding_message: 'RP-4711',
});
console.error(JSON.stringify({ started: started.auth_req_id, interval: started.interval }));

const tokens = await client.pollBackchannelAuthenticationGrant(config, started);
console.log(JSON.stringify({
  client_credentials_scope: cc.scope,
  auth_req_id: started.auth_req_id,
  token_type: tokens.token_type,
  claims: tokens.claims(),
}));
