/**
 * Test certificates made with the openssl CLI: a CA and server certificates
 * signed by it, with the SANs a test asks for, in a temp dir.
 */

export interface TestPki {
  dir: string;
  /** The CA certificate (PEM): what clients trust. */
  caCert: string;
  /** Issues a server certificate for `sans` ("DNS:x", "IP:127.0.0.1"); paths of cert and key. */
  issue(
    name: string,
    sans: string[],
    o?: { days?: number; expired?: boolean },
  ): Promise<{ cert: string; key: string }>;
  remove(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A fresh CA in a temp dir (EC P-256 keys: quick to make). */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "eta-pki-" });
  await Deno.chmod(dir, 0o755); // chronyd reads the files after dropping root
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=edge-time test CA",
  ], dir);
  let serial = 1;
  return {
    dir,
    caCert: `${dir}/ca.pem`,
    async issue(name, sans, o = {}) {
      const key = `${dir}/${name}.key`, cert = `${dir}/${name}.pem`;
      await openssl([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        `${dir}/${name}.csr`,
        "-subj",
        `/CN=${name}`,
      ], dir);
      await Deno.writeTextFile(
        `${dir}/${name}.ext`,
        `subjectAltName=${sans.join(",")}\nbasicConstraints=CA:FALSE\n` +
          `keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
      );
      if (o.expired) {
        // `openssl x509` takes no start date before 3.4: `openssl ca` with a past window.
        await Deno.mkdir(`${dir}/db`, { recursive: true });
        await Deno.writeTextFile(`${dir}/db/index.txt`, "");
        await Deno.writeTextFile(
          `${dir}/db/serial`,
          `${(serial++).toString(16).padStart(2, "0")}\n`,
        );
        await Deno.writeTextFile(
          `${dir}/ca.cnf`,
          "[ca]\ndefault_ca = c\n[c]\ndatabase = db/index.txt\nnew_certs_dir = db\n" +
            "serial = db/serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
        );
        await openssl([
          "ca",
          "-batch",
          "-config",
          "ca.cnf",
          "-cert",
          "ca.pem",
          "-keyfile",
          "ca.key",
          "-in",
          `${dir}/${name}.csr`,
          "-out",
          cert,
          "-extfile",
          `${dir}/${name}.ext`,
          "-startdate",
          "20200101000000Z",
          "-enddate",
          "20200102000000Z",
        ], dir);
      } else {
        await openssl([
          "x509",
          "-req",
          "-in",
          `${dir}/${name}.csr`,
          "-CA",
          "ca.pem",
          "-CAkey",
          "ca.key",
          "-out",
          cert,
          "-extfile",
          `${dir}/${name}.ext`,
          "-days",
          String(o.days ?? 2),
          "-set_serial",
          String(serial++),
        ], dir);
      }
      for (const f of [key, cert]) await Deno.chmod(f, 0o644);
      return { cert, key };
    },
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
