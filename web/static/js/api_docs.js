// Renders GET /openapi.json as a list of operations and schemas, with no library: the page ships with the app.
"use strict";

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function schemaLink(schema) {
  const name = refName(schema);
  if (name) return el("a", name, {href: "#schema-" + name});
  return el("code", JSON.stringify(schema));
}

function contentOf(content) {
  const item = el("span");
  for (const [type, media] of Object.entries(content || {})) {
    item.append(el("code", type), " ", schemaLink(media.schema), " ");
  }
  return item;
}

function renderOperation(path, method, op) {
  const section = el("section", null, {id: op.operationId, class: "operation"});
  const title = el("h3");
  title.append(el("code", method.toUpperCase() + " " + path), " — " + (op.summary || ""));
  section.append(title);
  const auth = (op.security || []).length ? "Bearer API key or session cookie" : "none";
  section.append(el("p", "Authentication: " + auth));
  if ((op.parameters || []).length) {
    const list = el("ul");
    for (const p of op.parameters) {
      const item = el("li");
      item.append(el("code", p.name), ` (${p.in}${p.required ? ", required" : ""}) `, el("code", JSON.stringify(p.schema)));
      if (p.description) item.append(" — " + p.description);
      list.append(item);
    }
    section.append(el("h4", "Parameters"), list);
  }
  if (op.requestBody) {
    const body = el("p", "Body: ");
    body.append(contentOf(op.requestBody.content));
    section.append(body);
  }
  const responses = el("ul");
  for (const [status, answer] of Object.entries(op.responses || {})) {
    const item = el("li");
    item.append(el("strong", status), " " + answer.description + " ", contentOf(answer.content));
    responses.append(item);
  }
  section.append(el("h4", "Responses"), responses);
  return section;
}

async function render() {
  const main = document.getElementById("main");
  const operations = document.getElementById("operations");
  const toc = document.getElementById("toc");
  let doc;
  try {
    const response = await fetch(main.dataset.document, {headers: {Accept: "application/json"}});
    doc = await response.json();
  } catch (error) {
    operations.replaceChildren(el("p", "Could not load the document: " + error));
    return;
  }
  const tocList = el("ul");
  operations.replaceChildren(el("h2", "Operations"));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      operations.append(renderOperation(path, method, op));
      const link = el("li");
      link.append(el("a", method.toUpperCase() + " " + path, {href: "#" + op.operationId}));
      tocList.append(link);
    }
  }
  toc.replaceChildren(tocList);
  const schemas = document.getElementById("schemas");
  schemas.replaceChildren(el("h2", "Schemas"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    schemas.append(el("h3", name, {id: "schema-" + name}), el("pre", JSON.stringify(schema, null, 2)));
  }
}

document.addEventListener("DOMContentLoaded", render);
