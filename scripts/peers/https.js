// An HTTPS/1.1 server on Node.js, whose OpenSSL is built into the node
// executable, for the TLS tests: `node https.js CERT KEY` listens on
// 127.0.0.1, prints "port N", answers GET PATH with 200 and "hello PATH\n",
// and POST with the body it got.
const fs = require("fs");
const https = require("https");

const [cert, key] = process.argv.slice(2);
const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = req.method === "POST" ? Buffer.concat(chunks) : Buffer.from(`hello ${req.url}\n`);
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": body.length });
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => console.log(`port ${server.address().port}`));
