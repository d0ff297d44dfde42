// The authorization server's oidc-provider configuration (SPEC.md, "Tokens", "Grants").
//
//   const clients = await ClientRegistry.open(db);                    // agents and apps, live
//   const provider = createProvider({ issuer, db, clients, gatewayResource, signingKeys });
//   app.use(mount(provider));  // or http.createServer(provider.callback())
//   // on shutdown: await clients.close()
export { createProvider, JWKS_PATH, type ProviderOptions, TOKEN_PATH } from './create.ts';
export { decideIssuance, type Issuance, type IssuanceRefusal, type IssuanceRequest } from './issuance.ts';
export { type IssuedToken, recordIssued } from './ledger.ts';
