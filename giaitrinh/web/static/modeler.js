// The process designers' modeler: bpmn-js (from npm, served under /vendor/) plus a small side
// panel for what GiảiTrình needs on each element (step key, lane role, form, status), a list of
// the server's validation problems marked on the diagram, and a JSON Schema form editor with a
// live preview rendered by the server exactly as a task page renders it.
// Data comes from data-* attributes and the JSON API; every POST carries the X-CSRF-Token header.
(function () {
  "use strict";

  var root = document.getElementById("modeler");
  if (!root || typeof window.BpmnJS !== "function") { return; }

  var M = JSON.parse(root.getAttribute("data-messages"));
  var ROLES = JSON.parse(root.getAttribute("data-roles"));
  var CSRF = root.getAttribute("data-csrf");
  var UNSUPPORTED = ["bpmn:Task", "bpmn:ManualTask", "bpmn:ServiceTask", "bpmn:SendTask", "bpmn:ReceiveTask",
                     "bpmn:BusinessRuleTask"];
  var STEP_KEY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

  // SpiffWorkflow's extension elements, so bpmn-js reads and writes them as real model objects.
  var SPIFF = {
    name: "SpiffWorkflow", uri: "http://spiffworkflow.org/bpmn/schema/1.0/core", prefix: "spiffworkflow",
    xml: { tagAlias: "lowerCase" }, associations: [],
    types: [
      { name: "Properties", superClass: ["Element"], properties: [{ name: "values", type: "Property", isMany: true }] },
      { name: "Property", superClass: ["Element"], properties: [
        { name: "name", isAttr: true, type: "String" }, { name: "value", isAttr: true, type: "String" }] },
      { name: "InstructionsForEndUser", superClass: ["Element"], properties: [{ name: "text", isBody: true, type: "String" }] },
      { name: "PreScript", superClass: ["Element"], properties: [{ name: "text", isBody: true, type: "String" }] },
      { name: "PostScript", superClass: ["Element"], properties: [{ name: "text", isBody: true, type: "String" }] }
    ]
  };

  function t(key, params) {
    var text = M[key] || key;
    Object.keys(params || {}).forEach(function (name) { text = text.split("%(" + name + ")s").join(String(params[name])); });
    return text;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs[name]; } else if (attrs[name] !== null && attrs[name] !== undefined) { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  var statusLine = document.getElementById("modeler-status");
  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "status-line" + (kind ? " " + kind : "");
  }

  var modeler = new window.BpmnJS({ container: "#canvas", moddleExtensions: { spiffworkflow: SPIFF } });
  var registry = modeler.get("elementRegistry");
  var modeling = modeler.get("modeling");
  var moddle = modeler.get("moddle");
  var canvas = modeler.get("canvas");
  var overlays = modeler.get("overlays");
  var selection = modeler.get("selection");
  window.giaitrinhModeler = modeler; // for people debugging a diagram in the console

  var state = { forms: {}, savedId: null, dirty: false, marked: [], key: "", version: root.getAttribute("data-version"),
                currentForm: null };

  function api(url, body) {
    return fetch(url, {
      method: body === undefined ? "GET" : "POST", credentials: "same-origin",
      headers: body === undefined ? { Accept: "application/json" } :
        { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": CSRF },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { text: text }; }
        return { status: response.status, data: data };
      });
    });
  }

  function setDeployable(yes) {
    document.getElementById("btn-deploy").disabled = !yes;
  }

  // -- extension properties (spiffworkflow:properties) --------------------------------------
  function propsOf(bo) {
    var ext = bo.extensionElements;
    if (!ext || !ext.values) { return null; }
    for (var i = 0; i < ext.values.length; i++) {
      if (ext.values[i].$type === "spiffworkflow:Properties") { return ext.values[i]; }
    }
    return null;
  }

  function getProp(bo, name) {
    var props = propsOf(bo);
    if (!props) { return ""; }
    var found = (props.values || []).filter(function (p) { return p.name === name; })[0];
    return found ? (found.value || "") : "";
  }

  function setProp(element, name, value) {
    var bo = element.businessObject;
    var ext = bo.extensionElements || moddle.create("bpmn:ExtensionElements", { values: [] });
    ext.values = ext.values || [];
    var props = propsOf(bo);
    if (!props) {
      props = moddle.create("spiffworkflow:Properties", { values: [] });
      props.$parent = ext;
      ext.values.push(props);
    }
    var kept = (props.values || []).filter(function (p) { return p.name !== name; });
    if (value) {
      var prop = moddle.create("spiffworkflow:Property", { name: name, value: value });
      prop.$parent = props;
      kept.push(prop);
    }
    props.values = kept;
    ext.$parent = bo;
    modeling.updateProperties(element, { extensionElements: ext });
  }

  function laneOf(element) {
    var lanes = registry.filter(function (e) { return e.type === "bpmn:Lane"; });
    var id = element.businessObject.id;
    var found = null;
    lanes.forEach(function (lane) {
      (lane.businessObject.flowNodeRef || []).forEach(function (ref) { if (ref.id === id) { found = lane; } });
    });
    return found;
  }

  function roleOfLane(lane) {
    if (!lane) { return ""; }
    var role = getProp(lane.businessObject, "role");
    if (role) { return role; }
    var id = lane.businessObject.id || "";
    var name = id.indexOf("_") >= 0 ? id.slice(id.indexOf("_") + 1) : id;
    return ROLES.indexOf(name) >= 0 ? name : "";
  }

  // -- the side panel ----------------------------------------------------------------------------
  var propsBox = document.getElementById("props");

  function field(label, control, id) {
    return el("div", { "class": "field" }, [el("label", { "for": id, text: label }), control]);
  }

  function select(id, options, current) {
    var node = el("select", { id: id });
    options.forEach(function (option) {
      var item = el("option", { value: option[0], text: option[1] });
      if (option[0] === current) { item.selected = true; }
      node.appendChild(item);
    });
    return node;
  }

  function statuses() {
    var found = {};
    registry.getAll().forEach(function (e) {
      if (e.businessObject && e.businessObject.extensionElements) {
        var value = getProp(e.businessObject, "status");
        if (value) { found[value] = true; }
      }
    });
    return Object.keys(found).sort();
  }

  // The statutory periods are properties of the process: a change of law is a new version.
  var PERIODS = ["acknowledge_working_days", "explain_days", "extension_max_days", "extensions_allowed",
                 "escalation_repeat_working_days"];

  function processTarget() {
    var participant = registry.filter(function (e) {
      return e.type === "bpmn:Participant" && e.businessObject.processRef &&
        e.businessObject.processRef.isExecutable;
    })[0];
    if (participant) { return { shape: participant, bo: participant.businessObject.processRef }; }
    var rootElement = canvas.getRootElement();
    return rootElement && rootElement.businessObject && rootElement.businessObject.$type === "bpmn:Process" ?
      { shape: rootElement, bo: rootElement.businessObject } : null;
  }

  function setProcessProp(target, name, value) {
    var bo = target.bo;
    var ext = bo.extensionElements || moddle.create("bpmn:ExtensionElements", { values: [] });
    ext.values = ext.values || [];
    var props = propsOf(bo);
    if (!props) {
      props = moddle.create("spiffworkflow:Properties", { values: [] });
      props.$parent = ext;
      ext.values.push(props);
    }
    var kept = (props.values || []).filter(function (p) { return p.name !== name; });
    if (value !== "") {
      var prop = moddle.create("spiffworkflow:Property", { name: name, value: value });
      prop.$parent = props;
      kept.push(prop);
    }
    props.values = kept;
    ext.$parent = bo;
    modeling.updateModdleProperties(target.shape, bo, { extensionElements: ext });
  }

  var periodsBox = document.getElementById("periods-panel");

  function showPeriods() {
    var target = processTarget();
    periodsBox.textContent = "";
    if (!target) { return; }
    var box = el("div", { "class": "periods", id: "periods" }, [el("h2", { text: M.periods })]);
    PERIODS.forEach(function (period) {
      var name = "period." + period;
      var input = el("input", { id: "period-" + period, type: "number", min: "0", max: "365", inputmode: "numeric",
                                value: getProp(target.bo, name) });
      input.addEventListener("change", function () { setProcessProp(target, name, input.value.trim()); });
      box.appendChild(field(M["period_" + period] || name, input, "period-" + period));
    });
    periodsBox.appendChild(box);
  }

  function showPanel(element) {
    propsBox.textContent = "";
    if (!element || element.type === "bpmn:Process" || element.type === "bpmn:Collaboration" || element.type === "label") {
      propsBox.appendChild(el("p", { "class": "hint", text: M.nothing_selected }));
      return;
    }
    var bo = element.businessObject;
    propsBox.appendChild(el("p", { "class": "meta", text: M.type + ": " + element.type.replace("bpmn:", "") }));

    var idInput = el("input", { id: "prop-id", value: bo.id || "" });
    var idError = el("p", { "class": "field-error", id: "prop-id-error", hidden: "hidden" });
    idInput.addEventListener("change", function () {
      var value = idInput.value.trim();
      if (value === bo.id) { return; }
      var other = registry.get(value);
      var problem = !STEP_KEY.test(value) ? M.id_invalid : (other && other !== element ? M.id_taken : "");
      if (problem) { idError.textContent = problem; idError.hidden = false; return; }
      idError.hidden = true;
      modeling.updateProperties(element, { id: value });
    });
    propsBox.appendChild(field(M.step_key, idInput, "prop-id"));
    propsBox.appendChild(idError);

    var nameInput = el("input", { id: "prop-name", value: bo.name || "" });
    nameInput.addEventListener("change", function () { modeling.updateLabel(element, nameInput.value); });
    propsBox.appendChild(field(M.name, nameInput, "prop-name"));

    if (UNSUPPORTED.indexOf(element.type) >= 0) {
      var replace = modeler.get("bpmnReplace");
      [["bpmn:UserTask", M.make_user_task, "make-user-task"], ["bpmn:ScriptTask", M.make_script_task, "make-script-task"]]
        .forEach(function (choice) {
          var button = el("button", { type: "button", id: choice[2], text: choice[1] });
          button.addEventListener("click", function () {
            var replaced = replace.replaceElement(element, { type: choice[0] });
            selection.select(replaced);
          });
          propsBox.appendChild(el("p", {}, [button]));
        });
    }

    if (element.type === "bpmn:UserTask") {
      var lanes = registry.filter(function (e) { return e.type === "bpmn:Lane"; });
      var lane = laneOf(element);
      var laneSelect = select("prop-lane", [["", M.no_lane]].concat(lanes.map(function (l) {
        var role = roleOfLane(l);
        return [l.id, (l.businessObject.name || l.id) + (role ? " · " + role : "")];
      })), lane ? lane.id : "");
      laneSelect.addEventListener("change", function () {
        var target = registry.get(laneSelect.value);
        if (!target) { return; }
        var dy = (target.y + target.height / 2) - (element.y + element.height / 2);
        modeling.moveElements([element], { x: 0, y: dy });
        showPanel(registry.get(element.id));
      });
      propsBox.appendChild(field(M.lane, laneSelect, "prop-lane"));

      var formName = getProp(bo, "formJsonSchemaFilename");
      var names = Object.keys(state.forms).sort();
      if (formName && names.indexOf(formName) < 0) { names.push(formName); }
      var formSelect = select("prop-form", [["", M.no_form]].concat(names.map(function (n) { return [n, n]; }))
        .concat([["__new__", M.new_form]]), formName);
      formSelect.addEventListener("change", function () {
        var chosen = formSelect.value;
        if (chosen === "__new__") {
          chosen = (bo.id || "form").toLowerCase().replace(/[^a-z0-9_]/g, "_") + ".json";
          if (!state.forms[chosen]) {
            state.forms[chosen] = { "$schema": "https://json-schema.org/draft/2020-12/schema", title: bo.name || bo.id,
              type: "object", properties: { note: { title: "Ý kiến", type: "string", "x-widget": "textarea" } },
              required: ["note"], additionalProperties: false };
          }
        }
        setProp(element, "formJsonSchemaFilename", chosen);
        showPanel(registry.get(element.id));
        if (chosen) { openForm(chosen); }
      });
      propsBox.appendChild(field(M.form, formSelect, "prop-form"));
      if (formName && state.forms[formName]) {
        var edit = el("button", { type: "button", id: "edit-form", text: M.edit_form });
        edit.addEventListener("click", function () { openForm(formName); });
        propsBox.appendChild(el("p", {}, [edit]));
      }

      var status = getProp(bo, "status");
      var known = statuses();
      if (status && known.indexOf(status) < 0) { known.push(status); }
      var statusSelect = select("prop-status", [["", M.no_status]].concat(known.map(function (s) { return [s, s]; })), status);
      statusSelect.addEventListener("change", function () { setProp(element, "status", statusSelect.value); });
      propsBox.appendChild(field(M.status, statusSelect, "prop-status"));
    }

    if (element.type === "bpmn:Lane") {
      var roleSelect = select("prop-role", [["", M.no_role]].concat(ROLES.map(function (r) { return [r, r]; })),
                              roleOfLane(element));
      roleSelect.addEventListener("change", function () { setProp(element, "role", roleSelect.value); });
      propsBox.appendChild(field(M.role, roleSelect, "prop-role"));
    }
  }

  modeler.on("selection.changed", function (event) {
    showPanel(event.newSelection.length === 1 ? event.newSelection[0] : null);
  });
  modeler.on("element.changed", function (event) {
    var current = selection.get();
    if (current.length === 1 && current[0] === event.element && !propsBox.contains(document.activeElement)) {
      showPanel(event.element);
    }
  });
  modeler.on("commandStack.changed", function () {
    state.dirty = true;
    setDeployable(false);
  });

  // -- problems, listed and marked on the diagram -----------------------------------------------
  var problemsList = document.getElementById("problems");
  var warningsList = document.getElementById("warnings");
  var problemCount = document.getElementById("problem-count");

  function shapeFor(id) {
    if (!id) { return null; }
    var shape = registry.get(id);
    if (shape) { return shape; }
    // A process-level problem (its statutory periods, say) is shown on its pool.
    return registry.filter(function (e) {
      return e.type === "bpmn:Participant" && e.businessObject.processRef && e.businessObject.processRef.id === id;
    })[0] || null;
  }

  function clearMarks() {
    state.marked.forEach(function (id) {
      if (registry.get(id)) { canvas.removeMarker(id, "gt-problem"); }
    });
    overlays.remove({ type: "gt-problem" });
    state.marked = [];
  }

  function showProblems(problems, warnings) {
    clearMarks();
    problemsList.textContent = "";
    warningsList.textContent = "";
    problemCount.textContent = String(problems.length);
    problemCount.className = "badge" + (problems.length ? " late" : " ok");
    var perShape = {};
    problems.forEach(function (problem, index) {
      var shape = shapeFor(problem.element_id);
      var item = el("li", { "data-element-id": problem.element_id || null, "class": shape ? "clickable" : null }, [
        problem.line ? el("span", { "class": "chip", text: M.line + " " + problem.line }) : null,
        problem.element_id ? el("code", { text: problem.element_id }) : null,
        el("span", { text: " " + problem.message })
      ]);
      if (shape) {
        item.tabIndex = 0;
        var focus = function () {
          selection.select(shape);
          if (typeof canvas.scrollToElement === "function") { canvas.scrollToElement(shape, { top: 100, left: 100 }); }
        };
        item.addEventListener("click", focus);
        item.addEventListener("keydown", function (e) { if (e.key === "Enter") { focus(); } });
        perShape[shape.id] = (perShape[shape.id] || []).concat([problem.message]);
      }
      problemsList.appendChild(item);
    });
    Object.keys(perShape).forEach(function (id) {
      canvas.addMarker(id, "gt-problem");
      state.marked.push(id);
      var badge = el("span", { "class": "gt-badge", title: perShape[id].join("\n"), text: String(perShape[id].length) });
      overlays.add(id, "gt-problem", { position: { top: -10, right: 10 }, html: badge });
    });
    if (!problems.length) { problemsList.appendChild(el("li", { "class": "meta", text: M.no_problems })); }
    (warnings || []).forEach(function (w) { warningsList.appendChild(el("li", { text: M.warnings + ": " + w })); });
  }

  function problemsFrom(response) {
    var error = response.data && response.data.error;
    if (error && error.problems) { return error.problems; }
    if (error) {
      var fields = error.fields ? Object.keys(error.fields).map(function (k) { return k + ": " + error.fields[k]; }) : [];
      return [{ message: error.message + (fields.length ? " (" + fields.join("; ") + ")" : "") }];
    }
    return [{ message: M.error + " " + response.status }];
  }

  // -- the toolbar ------------------------------------------------------------------------------
  function currentXml() {
    return modeler.saveXML({ format: true }).then(function (result) { return result.xml; });
  }

  function usedForms() {
    return state.forms;
  }

  function busy(yes) {
    root.setAttribute("data-state", yes ? "busy" : "ready");
    ["btn-validate", "btn-save"].forEach(function (id) { document.getElementById(id).disabled = yes; });
  }

  document.getElementById("btn-validate").addEventListener("click", function () {
    busy(true);
    say(M.checking);
    currentXml().then(function (xml) {
      return api(root.getAttribute("data-validate-url"), { bpmn: xml, forms: usedForms() });
    }).then(function (response) {
      busy(false);
      if (response.status === 200) {
        showProblems(response.data.problems, response.data.warnings);
        say(response.data.valid ? M.valid : t("invalid", { n: response.data.problems.length }),
            response.data.valid ? "ok" : "error");
      } else {
        showProblems(problemsFrom(response), []);
        say(t("invalid", { n: 1 }), "error");
      }
    }).catch(function (e) { busy(false); say(M.error + ": " + e, "error"); });
  });

  document.getElementById("btn-save").addEventListener("click", function () {
    busy(true);
    say(M.saving);
    currentXml().then(function (xml) {
      return api(root.getAttribute("data-save-url"), { bpmn: xml, forms: usedForms() });
    }).then(function (response) {
      busy(false);
      if (response.status === 201 || response.status === 200) {
        state.savedId = response.data.id;
        state.dirty = false;
        showProblems([], response.data.warnings);
        say(t(response.status === 201 ? "saved" : "same", { v: response.data.version }), "ok");
        root.setAttribute("data-saved-version", response.data.version);
        setDeployable(response.data.status === "draft");
      } else {
        var problems = problemsFrom(response);
        showProblems(problems, []);
        say(t("invalid", { n: problems.length }), "error");
      }
    }).catch(function (e) { busy(false); say(M.error + ": " + e, "error"); });
  });

  document.getElementById("btn-deploy").addEventListener("click", function () {
    if (!state.savedId || state.dirty) { say(M.save_first, "error"); return; }
    say(M.deploying);
    var url = root.getAttribute("data-deploy-url").replace("/0/", "/" + state.savedId + "/");
    api(url, {}).then(function (response) {
      if (response.status === 200) {
        say(t("deployed", { v: response.data.version }), "ok");
        root.setAttribute("data-deployed-version", response.data.version);
        setDeployable(false);
      } else {
        showProblems(problemsFrom(response), []);
        say(M.error, "error");
      }
    });
  });

  document.getElementById("btn-download").addEventListener("click", function () {
    currentXml().then(function (xml) {
      var link = el("a", { href: URL.createObjectURL(new Blob([xml], { type: "application/xml" })),
                           download: (state.key || "process") + "-v" + state.version + (state.dirty ? "-sua" : "") + ".bpmn" });
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  });

  document.getElementById("file-open").addEventListener("change", function (event) {
    var file = event.target.files[0];
    if (!file) { return; }
    file.text().then(function (xml) { return modeler.importXML(xml).then(function () { return file.name; }); })
      .then(function (name) {
        canvas.zoom("fit-viewport");
        showPeriods();
        state.dirty = true;
        state.savedId = null;
        setDeployable(false);
        showProblems([], []);
        say(t("opened_file", { name: name }));
      })
      .catch(function (e) { say(M.load_failed + ": " + e.message, "error"); });
  });

  // -- the form editor --------------------------------------------------------------------------
  var formPanel = document.getElementById("form-panel");
  var formJson = document.getElementById("form-json");
  var formProblems = document.getElementById("form-problems");
  var formPreview = document.getElementById("form-preview");
  var previewTimer = null;

  function openForm(name) {
    state.currentForm = name;
    formPanel.hidden = false;
    document.getElementById("form-name").textContent = name;
    formJson.value = JSON.stringify(state.forms[name] || {}, null, 2);
    refreshPreview();
  }

  function listFormProblems(problems) {
    formProblems.textContent = "";
    problems.forEach(function (p) { formProblems.appendChild(el("li", { text: p })); });
    if (!problems.length) { formProblems.appendChild(el("li", { "class": "ok", text: M.form_valid })); }
  }

  function refreshPreview() {
    var schema;
    try {
      schema = JSON.parse(formJson.value);
    } catch (e) {
      listFormProblems([M.form_json_error + ": " + e.message]);
      formJson.setAttribute("aria-invalid", "true");
      return;
    }
    formJson.removeAttribute("aria-invalid");
    if (state.currentForm) {
      var before = JSON.stringify(state.forms[state.currentForm]);
      state.forms[state.currentForm] = schema;
      if (before !== JSON.stringify(schema)) { state.dirty = true; setDeployable(false); }
    }
    api(root.getAttribute("data-preview-url"), { schema: schema }).then(function (response) {
      if (response.status !== 200) { listFormProblems([M.error + " " + response.status]); return; }
      listFormProblems(response.data.problems);
      // Server-rendered with Jinja's autoescape, the same macro as the task page.
      formPreview.innerHTML = response.data.html;
    });
  }

  formJson.addEventListener("input", function () {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refreshPreview, 300);
  });

  // -- loading ----------------------------------------------------------------------------------
  Promise.all([
    fetch(root.getAttribute("data-bpmn-url"), { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }),
    api(root.getAttribute("data-definition-url"))
  ]).then(function (loaded) {
    var definition = loaded[1].data || {};
    state.forms = JSON.parse(JSON.stringify(definition.forms || {}));
    state.key = definition.key || "";
    if (definition.status === "draft") { state.savedId = definition.id; }
    return modeler.importXML(loaded[0]);
  }).then(function () {
    canvas.zoom("fit-viewport");
    state.dirty = false;
    setDeployable(state.savedId !== null);
    showPanel(null);
    showPeriods();
    showProblems([], []);
    root.setAttribute("data-state", "ready");
    say(M.ready);
  }).catch(function (e) {
    root.setAttribute("data-state", "error");
    say(M.load_failed + ": " + (e && e.message ? e.message : e), "error");
  });
})();
