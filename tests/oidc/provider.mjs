// A real OpenID provider for the tests (the certified `oidc-provider` package), shaped
// like NHS Care Identity Service 2: the `nationalrbacaccess` scope releases
// `nhsid_nrbac_roles`, `selectedrole` releases `selected_roleid`, and each sign-in
// carries an authentication assurance level as `acr`. Started by tests/oidc/server.py on
// a free port; everything it needs comes from the environment. Synthetic people only.
import crypto from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

const PORT = Number(process.env.OIDC_TEST_PORT);
const ISSUER = `http://127.0.0.1:${PORT}`;
const CLIENTS = JSON.parse(process.env.OIDC_TEST_CLIENTS);

const profile = (person_roleid, org_code, role_code, role_name) => ({
  person_roleid,
  person_orgid: `${person_roleid}-org`,
  org_code,
  role_code,
  role_name,
  activity_codes: ["B0264", "B0360"],
  activities: ["Access Sensitive Data", "Perform Detailed Health Record"],
});

// Test users: the login name is the account. ZSSO1 is an acute trust with an active
// agreement, ZSSO2 a GP practice with one, ZSSO9 an organisation whose agreement ended.
export const USERS = {
  "ada.one": {
    acr: "AAL3_ANY",
    given_name: "Ada", family_name: "One",
    roles: [profile("5550001", "ZSSO1", "S8000:G8000:R8000", "Clinical Practitioner Access Role")],
  },
  "bea.two": {
    acr: "AAL3_ANY",
    given_name: "Bea", family_name: "Two",
    roles: [
      profile("5550002", "ZSSO2", "S8000:G8000:R0260", "General Medical Practitioner"),
      profile("5550003", "ZSSO1", "S8000:G8000:R8001", "Nurse Access Role"),
    ],
  },
  "cal.three": {
    acr: "AAL3_ANY",
    given_name: "Cal", family_name: "Three",
    roles: [
      profile("5550004", "ZSSO2", "S8000:G8000:R0260", "General Medical Practitioner"),
      profile("5550005", "ZSSO1", "S8000:G8000:R8000", "Clinical Practitioner Access Role"),
    ],
    selected: "5550005",
  },
  "dee.ended": {
    acr: "AAL3_ANY",
    given_name: "Dee", family_name: "Ended",
    roles: [profile("5550006", "ZSSO9", "S8000:G8000:R8000", "Clinical Practitioner Access Role")],
  },
  "eve.unmapped": {
    acr: "AAL3_ANY",
    given_name: "Eve", family_name: "Unmapped",
    roles: [profile("5550007", "ZSSO1", "S8000:G8000:R9999", "Unmapped Access Role")],
  },
  "fay.password": {
    acr: "AAL1_USERPASS",
    given_name: "Fay", family_name: "Password",
    roles: [profile("5550008", "ZSSO1", "S8000:G8000:R8000", "Clinical Practitioner Access Role")],
  },
};

const signing = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...signing.privateKey.export({ format: "jwk" }), kid: "test-op-1", use: "sig", alg: "RS256" };

const provider = new Provider(ISSUER, {
  clients: CLIENTS,
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  acrValues: ["AAL1_USERPASS", "AAL2_OR_ABOVE", "AAL3_ANY"],
  claims: {
    acr: null,
    amr: null,
    auth_time: null,
    sid: null,
    openid: ["sub", "acr", "amr", "auth_time"],
    profile: ["given_name", "family_name", "name"],
    email: ["email"],
    nationalrbacaccess: ["nhsid_nrbac_roles"],
    selectedrole: ["selected_roleid"],
  },
  features: {
    devInteractions: { enabled: false },
    // The provider's own pages without its default third-party web font: the browser
    // tests fail on any request to another host.
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html lang="en"><head><title>Sign out</title></head><body>
          <h1>Sign out of the test provider?</h1>${form}
          <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
          <button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = `<!DOCTYPE html><html lang="en"><head><title>Signed out</title></head>
          <body><h1>Signed out</h1></body></html>`;
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          given_name: user.given_name,
          family_name: user.family_name,
          name: `${user.given_name} ${user.family_name}`,
          email: `${id}@example.nhs.test`,
          nhsid_nrbac_roles: user.roles,
          ...(user.selected ? { selected_roleid: user.selected } : {}),
        };
      },
    };
  },
});

const page = (body) =>
  `<!doctype html><html lang="en"><head><title>Test NHS identity</title></head><body>${body}</body></html>`;

function readForm(req) {
  return new Promise((resolve) => {
    let raw = "";
    req.on("data", (chunk) => { raw += chunk; });
    req.on("end", () => resolve(new URLSearchParams(raw)));
  });
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, uid } = details;
  if (prompt.name === "login") {
    if (req.method === "POST") {
      const form = await readForm(req);
      const login = form.get("login") || "";
      if (USERS[login]) {
        const result = { login: { accountId: login, acr: USERS[login].acr, amr: ["pwd"] } };
        return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
      }
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    return res.end(page(
      `<h1>Test identity provider</h1><form method="post" action="/interaction/${uid}">` +
      `<label for="login">Login</label><input id="login" name="login">` +
      `<button type="submit">Sign in</button></form>`,
    ));
  }
  // Consent: granted for what the client asked (these are the platform's own users).
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((error) => {
      res.writeHead(400, { "Content-Type": "text/plain" });
      res.end(`interaction failed: ${error.name}`);
    });
    return;
  }
  callback(req, res);
}).listen(PORT, "127.0.0.1", () => {
  process.stdout.write(`listening ${ISSUER}\n`);
});
