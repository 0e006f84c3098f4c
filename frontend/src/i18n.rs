//! English and Spanish. The English text is the key; [`ES`] maps it to Spanish. A text without
//! a translation shows in English (a test checks that every text the pages use has one).

/// The dashboard's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s.starts_with("es") {
            Self::Es
        } else {
            Self::En
        }
    }
}

/// `key` in `lang`.
pub fn translate(lang: Lang, key: &'static str) -> &'static str {
    match lang {
        Lang::En => key,
        Lang::Es => ES
            .iter()
            .find(|(en, _)| *en == key)
            .map_or(key, |(_, es)| es),
    }
}

/// English → Spanish.
static ES: &[(&str, &str)] = &[
    ("(required)", "(obligatorio)"),
    ("A job template", "Una plantilla de trabajo"),
    ("API", "API"),
    ("Abandon", "Abandonar"),
    (
        "Abort when this % of devices failed (empty: never)",
        "Abortar cuando falle este % de dispositivos (vacío: nunca)",
    ),
    ("Action", "Acción"),
    ("Active jobs", "Trabajos activos"),
    ("Active rollouts", "Despliegues activos"),
    ("Actor", "Autor"),
    ("Add wave", "Añadir oleada"),
    ("All", "Todos"),
    ("All jobs", "Todos los trabajos"),
    (
        "Also stop executions in progress",
        "Detener también las ejecuciones en curso",
    ),
    (
        "An artifact from the library",
        "Un artefacto de la biblioteca",
    ),
    (
        "An operator approves each wave",
        "Un operador aprueba cada oleada",
    ),
    ("Approve", "Aprobar"),
    ("Artifact", "Artefacto"),
    ("Artifacts", "Artefactos"),
    ("Attempt", "Intento"),
    ("Attributes", "Atributos"),
    ("Audit log", "Registro de auditoría"),
    ("Awaiting approval", "Esperando aprobación"),
    ("Back", "Atrás"),
    (
        "Canary devices (go first)",
        "Dispositivos canario (van primero)",
    ),
    ("Cancel", "Cancelar"),
    ("Cancel job", "Cancelar trabajo"),
    ("Cancel on this device", "Cancelar en este dispositivo"),
    ("Cancel rollout", "Cancelar despliegue"),
    ("Canceled", "Cancelado"),
    (
        "Checking the SHA-256 and signing",
        "Comprobando el SHA-256 y firmando",
    ),
    ("Choose a file.", "Elija un archivo."),
    ("Choose a template.", "Elija una plantilla."),
    ("Choose an artifact.", "Elija un artefacto."),
    (
        "Choose at least one device or group.",
        "Elija al menos un dispositivo o grupo.",
    ),
    (
        "Choose the artifact to roll back to in the release step.",
        "Elija en el paso de la versión el artefacto al que volver.",
    ),
    ("Choose…", "Elegir…"),
    ("Close", "Cerrar"),
    (
        "Complete the release step to see which devices match.",
        "Complete el paso de versión para ver qué dispositivos coinciden.",
    ),
    ("Completed", "Completado"),
    (
        "Could not abandon the upload.",
        "No se pudo abandonar la subida.",
    ),
    (
        "Could not reach the artifact store",
        "No se pudo contactar con el almacén de artefactos",
    ),
    ("Created", "Creado"),
    ("Created (UTC)", "Creado (UTC)"),
    ("Dark", "Oscuro"),
    ("Dark mode", "Modo oscuro"),
    ("Deleting", "Eliminando"),
    ("Description", "Descripción"),
    ("Device", "Dispositivo"),
    ("Devices", "Dispositivos"),
    (
        "Devices (thing names, separated by commas or spaces)",
        "Dispositivos (nombres de cosas, separados por comas o espacios)",
    ),
    (
        "Devices notified per minute (1-1000)",
        "Dispositivos notificados por minuto (1-1000)",
    ),
    ("Devices retried:", "Dispositivos reintentados:"),
    ("Dismiss", "Descartar"),
    ("Document", "Documento"),
    (
        "Drop a file here or choose one",
        "Suelte aquí un archivo o elija uno",
    ),
    ("Enter a date and time.", "Introduzca una fecha y hora."),
    (
        "Enter a handler file name without folders.",
        "Introduzca un nombre de manejador sin carpetas.",
    ),
    ("Enter a name.", "Introduzca un nombre."),
    (
        "Enter a percentage above 0 and at most 100.",
        "Introduzca un porcentaje mayor que 0 y como máximo 100.",
    ),
    (
        "Enter a percentage from 0 to 100.",
        "Introduzca un porcentaje de 0 a 100.",
    ),
    (
        "Enter a time zone such as Europe/Madrid.",
        "Introduzca una zona horaria como Europe/Madrid.",
    ),
    (
        "Enter a whole number from 0 to 10.",
        "Introduzca un número entero de 0 a 10.",
    ),
    (
        "Enter a whole number from 1 to 1000.",
        "Introduzca un número entero de 1 a 1000.",
    ),
    (
        "Enter a whole number of at least 1.",
        "Introduzca un número entero de al menos 1.",
    ),
    ("Enter a whole number.", "Introduzca un número entero."),
    (
        "Enter minutes from 0 to 10080.",
        "Introduzca minutos de 0 a 10080.",
    ),
    (
        "Enter minutes from 1 to 10080.",
        "Introduzca minutos de 1 a 10080.",
    ),
    (
        "Enter the version this build installs.",
        "Indique la versión que instala esta compilación.",
    ),
    (
        "Enter the version this release installs.",
        "Introduzca la versión que instala este despliegue.",
    ),
    ("Entries exported:", "Entradas exportadas:"),
    (
        "Every failed, rejected or timed-out device gets the job again as a follow-up job.",
        "Cada dispositivo fallido, rechazado o caducado recibe el trabajo de nuevo como trabajo de seguimiento.",
    ),
    (
        "Every wave that has not finished is canceled. This cannot be undone.",
        "Se cancela cada oleada sin terminar. No se puede deshacer.",
    ),
    ("Execution canceled.", "Ejecución cancelada."),
    ("Executions", "Ejecuciones"),
    ("Executions of", "Ejecuciones de"),
    ("Export CSV", "Exportar CSV"),
    ("Failed", "Fallido"),
    (
        "Failed executions in active jobs",
        "Ejecuciones fallidas en trabajos activos",
    ),
    ("Failure policy", "Política ante fallos"),
    ("Failure reasons", "Motivos de fallo"),
    ("Failures allowed, %", "Fallos permitidos, %"),
    ("Find", "Buscar"),
    ("Finished", "Terminado"),
    ("Fleet size", "Tamaño de la flota"),
    ("Follow the system", "Seguir al sistema"),
    ("Following", "Siguiendo"),
    ("Gate", "Control"),
    ("Gates between waves", "Controles entre oleadas"),
    ("Give 1 to 20 waves.", "Indique de 1 a 20 oleadas."),
    ("Groups", "Grupos"),
    (
        "Hardware types (comma-separated)",
        "Tipos de hardware (separados por comas)",
    ),
    ("History", "Historial"),
    ("In progress", "En curso"),
    ("Install handler", "Manejador de instalación"),
    ("Job", "Trabajo"),
    ("Job canceled.", "Trabajo cancelado."),
    ("Job document (JSON)", "Documento del trabajo (JSON)"),
    (
        "Job document devices receive",
        "Documento de trabajo que reciben los dispositivos",
    ),
    ("Job history", "Historial de trabajos"),
    ("Job started:", "Trabajo iniciado:"),
    ("Jobs", "Trabajos"),
    ("Language", "Idioma"),
    ("Light", "Claro"),
    ("Live", "En directo"),
    ("Live updates", "Actualizaciones en directo"),
    ("Loading…", "Cargando…"),
    ("Main", "Principal"),
    ("Name", "Nombre"),
    ("Needs attention", "Requiere atención"),
    ("New rollout", "Nuevo despliegue"),
    ("New template", "Nueva plantilla"),
    ("Next", "Siguiente"),
    ("Next window", "Próxima ventana"),
    ("No active rollouts.", "No hay despliegues activos."),
    ("No artifacts yet.", "Aún no hay artefactos."),
    (
        "No artifacts yet. Upload them through the API (see docs/artifacts.md).",
        "Aún no hay artefactos. Súbalos mediante la API (véase docs/artifacts.md).",
    ),
    ("No devices match.", "Ningún dispositivo coincide."),
    ("No executions match.", "Ninguna ejecución coincide."),
    ("No failures.", "Sin fallos."),
    ("No jobs yet.", "Aún no hay trabajos."),
    ("No jobs.", "No hay trabajos."),
    (
        "No new wave starts and the running wave's queued devices wait.",
        "No empieza ninguna oleada nueva y los dispositivos en cola de la oleada actual esperan.",
    ),
    ("No templates yet.", "Aún no hay plantillas."),
    ("No thing groups.", "No hay grupos de cosas."),
    ("None", "Ninguno"),
    ("Not before (empty: now)", "No antes de (vacío: ahora)"),
    ("Nothing needs attention.", "Nada requiere atención."),
    ("Offline", "Sin conexión"),
    (
        "Only devices with these attributes (key=value per line)",
        "Solo dispositivos con estos atributos (clave=valor por línea)",
    ),
    ("Open device page", "Abrir la página del dispositivo"),
    ("Options", "Opciones"),
    ("Outcome", "Resultado"),
    ("Overview", "Resumen"),
    ("Page", "Página"),
    ("Page not found", "Página no encontrada"),
    ("Parameter", "Parámetro"),
    ("Parameters", "Parámetros"),
    ("Passed", "Superada"),
    ("Pause", "Pausar"),
    ("Paused", "En pausa"),
    ("Pending", "Pendiente"),
    ("Previous", "Anterior"),
    ("Progress", "Progreso"),
    ("Promote", "Promover"),
    ("Queued", "En cola"),
    (
        "Queued executions stop. Devices already working finish unless you force it.",
        "Las ejecuciones en cola se detienen. Los dispositivos que ya trabajan terminan salvo que lo fuerce.",
    ),
    ("Ready", "Listo"),
    ("Reason", "Motivo"),
    ("Reboot", "Reiniciar"),
    ("Rejected", "Rechazado"),
    ("Release", "Versión"),
    ("Remove", "Quitar"),
    ("Remove wave", "Quitar oleada"),
    ("Removed", "Eliminado"),
    ("Request", "Solicitud"),
    ("Resume", "Reanudar"),
    (
        "Retries of failed devices (0-10)",
        "Reintentos de dispositivos fallidos (0-10)",
    ),
    ("Retry", "Reintentar"),
    ("Retry failed", "Reintentar fallidos"),
    ("Retry on this device", "Reintentar en este dispositivo"),
    ("Retry started as job", "Reintento iniciado como trabajo"),
    ("Review", "Revisión"),
    ("Roll back", "Revertir"),
    ("Roll back to (optional)", "Revertir a (opcional)"),
    ("Rolled back", "Revertido"),
    ("Rolling back", "Revirtiendo"),
    ("Rollout", "Despliegue"),
    ("Run", "Ejecutar"),
    ("Run a template…", "Ejecutar una plantilla…"),
    ("Run job", "Ejecutar el trabajo"),
    ("Run template", "Ejecutar la plantilla"),
    ("Running", "En marcha"),
    ("Save", "Guardar"),
    ("Schedule", "Programación"),
    ("Scheduled", "Programado"),
    ("Search", "Buscar"),
    ("Sending", "Enviando"),
    (
        "Serial or thing name",
        "Número de serie o nombre de la cosa",
    ),
    ("Settings", "Ajustes"),
    ("Sign in", "Iniciar sesión"),
    ("Sign out", "Cerrar sesión"),
    ("Show", "Mostrar"),
    ("Size", "Tamaño"),
    ("Size by", "Tamaño por"),
    ("Skip to content", "Saltar al contenido"),
    ("Soak time, minutes", "Tiempo de observación, minutos"),
    ("Start", "Iniciar"),
    ("Started.", "Iniciado."),
    ("State", "Estado"),
    ("Status", "Estado"),
    ("Steps", "Pasos"),
    ("Stop job", "Detener el trabajo"),
    ("Stopped", "Detenido"),
    ("Succeeded", "Correcto"),
    ("Success needed, %", "Éxito necesario, %"),
    ("Target", "Destino"),
    ("Target starts with", "Destino empieza por"),
    ("Targets", "Destinos"),
    ("Technician", "Técnico"),
    ("Technician action on", "Acción de técnico en"),
    ("Template", "Plantilla"),
    ("Template id", "Id de plantilla"),
    ("Template saved:", "Plantilla guardada:"),
    ("Templates", "Plantillas"),
    (
        "The artifact store refused a part",
        "El almacén de artefactos rechazó una parte",
    ),
    (
        "The browser could not read the file.",
        "El navegador no pudo leer el archivo.",
    ),
    (
        "The document is not valid JSON",
        "El documento no es JSON válido",
    ),
    (
        "The failed devices of the current wave get the release again.",
        "Los dispositivos fallidos de la oleada actual reciben la versión de nuevo.",
    ),
    (
        "The file changed while it was being uploaded; choose it again.",
        "El archivo cambió durante la subida; vuelva a elegirlo.",
    ),
    (
        "The next wave starts now, without waiting for the current wave's gate.",
        "La siguiente oleada empieza ya, sin esperar al control de la oleada actual.",
    ),
    (
        "The rollout goes on from where it stopped.",
        "El despliegue continúa desde donde se detuvo.",
    ),
    (
        "The rollout stops, and the devices that updated get the previous release again. This cannot be undone.",
        "El despliegue se detiene y los dispositivos actualizados vuelven a recibir la versión anterior. No se puede deshacer.",
    ),
    (
        "The server writes the install document: the artifact's presigned URL, SHA-256 and signature, and the handler.",
        "El servidor escribe el documento de instalación: la URL prefirmada del artefacto, su SHA-256 y firma, y el manejador.",
    ),
    (
        "The wave's gate is approved; the next wave may start.",
        "Se aprueba el control de la oleada; puede empezar la siguiente.",
    ),
    ("Theme", "Tema"),
    ("Thing groups", "Grupos de cosas"),
    ("Thing name", "Nombre de la cosa"),
    ("Thing name starts with", "El nombre empieza por"),
    ("Time zone", "Zona horaria"),
    ("Timed out", "Caducado"),
    (
        "Timeout in progress, minutes (1-10080)",
        "Tiempo máximo en curso, minutos (1-10080)",
    ),
    ("Total", "Total"),
    ("Type", "Tipo"),
    ("Unknown", "Desconocido"),
    ("Updated (UTC)", "Actualizado (UTC)"),
    ("Upload", "Subir"),
    ("Upload a build", "Subir una compilación"),
    ("Upload abandoned.", "Subida abandonada."),
    ("Upload progress", "Progreso de la subida"),
    ("Uploaded", "Subido"),
    ("Uploaded (UTC)", "Subido (UTC)"),
    ("Uploaded and signed.", "Subido y firmado."),
    (
        "Use letters, digits, '-' and '_' (at most 40).",
        "Use letras, dígitos, '-' y '_' (como máximo 40).",
    ),
    ("Verifying", "Verificando"),
    ("Version", "Versión"),
    ("Version it installs", "Versión que instala"),
    ("Wave", "Oleada"),
    ("Waves", "Oleadas"),
    ("What to install", "Qué instalar"),
    ("When (UTC)", "Cuándo (UTC)"),
    ("When a gate fails", "Cuando falla un control"),
    (
        "Write one key=value per line.",
        "Escriba un clave=valor por línea.",
    ),
    ("Your role", "Su rol"),
    (
        "Your role may not start rollouts.",
        "Su rol no puede iniciar despliegues.",
    ),
    (
        "actions your role may not take are hidden.",
        "se ocultan las acciones que su rol no puede realizar.",
    ),
    ("again on", "de nuevo en"),
    ("by", "por"),
    ("devices", "dispositivos"),
    ("devices match now", "dispositivos coinciden ahora"),
    ("devices targeted", "dispositivos de destino"),
    ("done", "hecho"),
    ("failed", "fallidos"),
    ("failure", "fallo"),
    ("finished", "terminado"),
    ("in progress", "en curso"),
    ("left out", "excluidos"),
    ("no reason given", "sin motivo indicado"),
    ("on", "en"),
    ("percent of the rest", "por ciento del resto"),
    ("queued", "en cola"),
    ("succeeded", "correctos"),
    ("success", "éxito"),
    ("wave", "oleada"),
    (
        "…after at least this many finished",
        "…tras al menos estos terminados",
    ),
    ("Agent version", "Versión del agente"),
    ("Attributes (key=value;…)", "Atributos (clave=valor;…)"),
    (
        "Attributes are key=value pairs separated by ;",
        "Los atributos son pares clave=valor separados por ;",
    ),
    ("Bundle", "Paquete"),
    (
        "Bundle downloaded; the server no longer has it.",
        "Paquete descargado; el servidor ya no lo guarda.",
    ),
    ("CSV file", "Archivo CSV"),
    ("Certificates revoked:", "Certificados revocados:"),
    ("Change", "Cambio"),
    (
        "Columns: name, thing_type, attributes (key=value;…), groups (a;b), software_version; a header line first. A file with any problem registers nothing.",
        "Columnas: name, thing_type, attributes (clave=valor;…), groups (a;b), software_version; primero una línea de cabecera. Un archivo con cualquier problema no registra nada.",
    ),
    ("Connected", "Conectado"),
    ("Connectivity", "Conectividad"),
    ("Connectivity history", "Historial de conectividad"),
    ("Create group", "Crear grupo"),
    ("Device registered:", "Dispositivo registrado:"),
    ("Disconnected", "Desconectado"),
    ("Download bundle", "Descargar paquete"),
    (
        "Dynamic (members found by a query)",
        "Dinámico (miembros según una consulta)",
    ),
    (
        "Enter the device's name.",
        "Introduce el nombre del dispositivo.",
    ),
    ("First page", "Primera página"),
    ("Group", "Grupo"),
    ("Group created:", "Grupo creado:"),
    ("Group name", "Nombre del grupo"),
    ("Groups (comma-separated)", "Grupos (separados por comas)"),
    ("Import devices from CSV", "Importar dispositivos desde CSV"),
    ("Importing…", "Importando…"),
    ("Installed version", "Versión instalada"),
    ("Inventory", "Inventario"),
    ("Kind", "Tipo de grupo"),
    ("Last job", "Último trabajo"),
    ("Line", "Línea"),
    ("Members", "Miembros"),
    ("Name starts with", "El nombre empieza por"),
    ("Never connected.", "Nunca se ha conectado."),
    ("Never reported", "Nunca informada"),
    ("No groups yet.", "Aún no hay grupos."),
    (
        "No version reported yet.",
        "Aún no ha informado ninguna versión.",
    ),
    ("Online", "En línea"),
    ("Open the device", "Abrir el dispositivo"),
    ("Parent group (optional)", "Grupo padre (opcional)"),
    ("Query", "Consulta"),
    ("Register", "Registrar"),
    ("Register a device", "Registrar un dispositivo"),
    ("Registered before", "Ya registrado"),
    ("Reported (UTC)", "Informada (UTC)"),
    ("Result", "Resultado"),
    ("Revoke", "Revocar"),
    ("Revoke certificates", "Revocar certificados"),
    (
        "Revoke every certificate of",
        "Revocar todos los certificados de",
    ),
    ("Share", "Proporción"),
    ("Software distribution", "Distribución del software"),
    ("Software version", "Versión del software"),
    (
        "Static (members added by name)",
        "Estático (miembros añadidos por nombre)",
    ),
    ("Status details", "Detalles del estado"),
    (
        "The bundle holds the device's private key and can be downloaded once, until",
        "El paquete contiene la clave privada del dispositivo y solo se puede descargar una vez, hasta el",
    ),
    (
        "The device is disconnected and cannot connect again with them.",
        "El dispositivo se desconecta y no podrá volver a conectarse con ellos.",
    ),
    (
        "The device was not registered.",
        "El dispositivo no se ha registrado.",
    ),
    (
        "The file could not be read.",
        "No se ha podido leer el archivo.",
    ),
    ("Thing type", "Tipo de cosa"),
    ("Version history", "Historial de versiones"),
    ("Whole fleet", "Toda la flota"),
    ("is registered.", "está registrado."),
    ("registered", "registrados"),
    ("seen", "visto"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page's source, to find the texts it shows.
    const SOURCES: &[&str] = &[
        include_str!("admin.rs"),
        include_str!("app.rs"),
        include_str!("devices.rs"),
        include_str!("inventory.rs"),
        include_str!("jobs.rs"),
        include_str!("overview.rs"),
        include_str!("rollouts.rs"),
        include_str!("ui.rs"),
        include_str!("upload.rs"),
        include_str!("wizard.rs"),
    ];

    /// The string literal right after each `marker` in `source`.
    fn literals_after<'a>(source: &'a str, marker: &str) -> Vec<&'a str> {
        source
            .match_indices(marker)
            .filter(|(i, _)| {
                // `t("` must not be the end of a longer name (`list("`).
                !source[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            })
            .filter_map(|(i, _)| {
                let rest = &source[i + marker.len()..];
                rest.find('"').map(|end| &rest[..end])
            })
            .collect()
    }

    #[test]
    fn every_text_the_pages_show_has_a_spanish_translation() {
        let mut missing = Vec::new();
        for source in SOURCES {
            for marker in ["t(\"", "tr(\"", "text(\"", "filter(\""] {
                for key in literals_after(source, marker) {
                    if !ES.iter().any(|(en, _)| *en == key) {
                        missing.push(key.to_owned());
                    }
                }
            }
        }
        // Texts the pages pick at run time.
        let statuses = [
            "IN_PROGRESS",
            "CANCELED",
            "COMPLETED",
            "DELETION_IN_PROGRESS",
            "SCHEDULED",
            "QUEUED",
            "SUCCEEDED",
            "FAILED",
            "REJECTED",
            "TIMED_OUT",
            "REMOVED",
            "running",
            "paused",
            "following",
            "rolling_back",
            "rolled_back",
            "pending",
            "verifying",
            "awaiting_approval",
            "passed",
            "?",
        ];
        let dynamic = statuses
            .iter()
            .map(|s| crate::ui::status_label(s))
            .chain(crate::wizard::STEPS)
            .chain({
                use crate::rollouts::Action::*;
                [
                    Pause,
                    Resume,
                    Promote,
                    Approve,
                    Cancel,
                    RollBack,
                    RetryFailed,
                ]
                .into_iter()
                .flat_map(|a| [a.label(), a.explain()])
            })
            .chain([
                crate::inventory::registration(" ", "", "", "", "")
                    .unwrap_err()
                    .1,
                crate::inventory::registration("x", "", "y", "", "")
                    .unwrap_err()
                    .1,
                "Revoke",
            ])
            .chain(
                crate::wizard::all_problems(&crate::wizard::Draft {
                    source: crate::wizard::Source::Template,
                    rollout_id: "bad id".into(),
                    attributes: "x".into(),
                    waves: vec![],
                    rate: "x".into(),
                    ..Default::default()
                })
                .into_iter()
                .map(|p| p.message),
            );
        for key in dynamic {
            if !ES.iter().any(|(en, _)| *en == key) {
                missing.push(key.to_owned());
            }
        }
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "no Spanish for: {missing:#?}");
    }

    #[test]
    fn translations_are_unique_and_fall_back_to_english() {
        for (i, (en, _)) in ES.iter().enumerate() {
            assert!(!ES[..i].iter().any(|(other, _)| other == en), "{en} twice");
        }
        assert_eq!(translate(Lang::Es, "Overview"), "Resumen");
        assert_eq!(translate(Lang::En, "Overview"), "Overview");
        assert_eq!(translate(Lang::Es, "not a key"), "not a key");
        assert_eq!(Lang::parse("es-ES"), Lang::Es);
        assert_eq!(Lang::parse("fr"), Lang::En);
    }
}
