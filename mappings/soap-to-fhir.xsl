<?xml version="1.0" encoding="UTF-8"?>
<!--
  cergw clinic SOAP API (schemas/soap/cergw-clinic.wsdl, SOAP 1.1 or 1.2) to
  FHIR R4. Writes become a transaction Bundle with conditional requests; a
  status query becomes a Parameters resource. Field-by-field table:
  docs/mappings.md. Identifiers of the clinic's own objects (schedules, slots,
  appointments) are scoped under the clinic's RPWDL OID, so that the rule
  cer.identity-match can tell whose they are.
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:c="urn:cergw:clinic:v1"
                xmlns:s11="http://schemas.xmlsoap.org/soap/envelope/"
                xmlns:s12="http://www.w3.org/2003/05/soap-envelope"
                xmlns="http://hl7.org/fhir" exclude-result-prefixes="c s11 s12">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <xsl:variable name="OID_RPWDL" select="'2.16.840.1.113883.3.4424.2.3.1'"/>
  <xsl:variable name="OID_PESEL" select="'2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="OID_NPWZ" select="'2.16.840.1.113883.3.4424.1.6.2'"/>
  <xsl:variable name="OID_SPECIALTY" select="'2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="VISIT_KIND" select="'http://cergw.pl/fhir/CodeSystem/visit-kind'"/>
  <xsl:variable name="URGENCY" select="'http://cergw.pl/fhir/StructureDefinition/urgency'"/>

  <xsl:template match="/">
    <xsl:variable name="op" select="(/s11:Envelope/s11:Body/* | /s12:Envelope/s12:Body/*)[1]"/>
    <xsl:choose>
      <xsl:when test="$op/self::c:ValidateMessageRequest"><xsl:apply-templates select="$op/*[1]"/></xsl:when>
      <xsl:when test="$op"><xsl:apply-templates select="$op"/></xsl:when>
      <xsl:otherwise><xsl:message terminate="yes">not a SOAP envelope with a body</xsl:message></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="*">
    <xsl:message terminate="yes">unsupported operation <xsl:value-of select="local-name()"/></xsl:message>
  </xsl:template>

  <!-- ============================================================ helpers -->
  <xsl:template name="own-id">
    <xsl:param name="value"/>
    <identifier>
      <system value="urn:oid:{$OID_RPWDL}.{normalize-space(ancestor-or-self::*/c:Clinic/c:Rpwdl)}"/>
      <value value="{normalize-space($value)}"/>
    </identifier>
  </xsl:template>
  <xsl:template name="specialty">
    <specialty><coding><system value="urn:oid:{$OID_SPECIALTY}"/><code value="{normalize-space(ancestor-or-self::*/c:Clinic/c:Specialty)}"/></coding></specialty>
  </xsl:template>
  <xsl:template name="visit-kind">
    <xsl:param name="kind"/>
    <xsl:if test="$kind != ''">
      <appointmentType><coding><system value="{$VISIT_KIND}"/><code value="{$kind}"/></coding></appointmentType>
    </xsl:if>
  </xsl:template>
  <xsl:template name="conditional">
    <xsl:param name="method" select="'PUT'"/>
    <xsl:param name="type"/>
    <xsl:param name="id"/>
    <request>
      <method value="{$method}"/>
      <url value="{$type}?identifier=urn:oid:{$OID_RPWDL}.{normalize-space(ancestor-or-self::*/c:Clinic/c:Rpwdl)}|{normalize-space($id)}"/>
    </request>
  </xsl:template>
  <xsl:template name="telecom">
    <xsl:param name="contact"/>
    <xsl:if test="$contact/c:Phone != ''"><telecom><system value="phone"/><value value="{normalize-space($contact/c:Phone)}"/></telecom></xsl:if>
    <xsl:if test="$contact/c:Email != ''"><telecom><system value="email"/><value value="{normalize-space($contact/c:Email)}"/></telecom></xsl:if>
  </xsl:template>
  <xsl:template name="practitioner-actor">
    <xsl:param name="p"/>
    <actor>
      <type value="Practitioner"/>
      <identifier><system value="urn:oid:{$OID_NPWZ}"/><value value="{normalize-space($p/c:Npwz)}"/></identifier>
      <xsl:if test="$p/c:Name != ''"><display value="{normalize-space($p/c:Name)}"/></xsl:if>
    </actor>
  </xsl:template>

  <!-- ===================================================== PublishSchedule -->
  <xsl:template match="c:PublishScheduleRequest">
    <Bundle>
      <type value="transaction"/>
      <entry>
        <resource>
          <Schedule>
            <xsl:call-template name="own-id"><xsl:with-param name="value" select="c:ScheduleId"/></xsl:call-template>
            <active value="true"/>
            <xsl:call-template name="specialty"/>
            <xsl:call-template name="practitioner-actor"><xsl:with-param name="p" select="c:Practitioner"/></xsl:call-template>
            <actor><type value="Location"/><display value="{normalize-space(c:Place)}"/></actor>
            <planningHorizon><start value="{normalize-space(c:HorizonStart)}"/><end value="{normalize-space(c:HorizonEnd)}"/></planningHorizon>
            <xsl:if test="c:Comment != ''"><comment value="{c:Comment}"/></xsl:if>
          </Schedule>
        </resource>
        <xsl:call-template name="conditional"><xsl:with-param name="type" select="'Schedule'"/><xsl:with-param name="id" select="c:ScheduleId"/></xsl:call-template>
      </entry>
    </Bundle>
  </xsl:template>

  <!-- ======================================================== PublishSlots -->
  <xsl:template match="c:PublishSlotsRequest">
    <Bundle>
      <type value="transaction"/>
      <xsl:for-each select="c:Slot">
        <entry>
          <resource>
            <Slot>
              <xsl:call-template name="own-id"><xsl:with-param name="value" select="c:Id"/></xsl:call-template>
              <xsl:call-template name="specialty"/>
              <xsl:call-template name="visit-kind"><xsl:with-param name="kind" select="normalize-space(c:VisitKind)"/></xsl:call-template>
              <schedule>
                <type value="Schedule"/>
                <xsl:call-template name="own-id"><xsl:with-param name="value" select="../c:ScheduleId"/></xsl:call-template>
              </schedule>
              <status value="{normalize-space(c:Status)}"/>
              <start value="{normalize-space(c:Start)}"/>
              <end value="{normalize-space(c:End)}"/>
              <xsl:if test="c:Comment != ''"><comment value="{c:Comment}"/></xsl:if>
            </Slot>
          </resource>
          <xsl:call-template name="conditional"><xsl:with-param name="type" select="'Slot'"/><xsl:with-param name="id" select="c:Id"/></xsl:call-template>
        </entry>
      </xsl:for-each>
    </Bundle>
  </xsl:template>

  <!-- ===================================================== BookAppointment -->
  <xsl:template match="c:BookAppointmentRequest">
    <xsl:variable name="pesel" select="normalize-space(c:Patient/c:Pesel)"/>
    <Bundle>
      <type value="transaction"/>
      <entry>
        <resource>
          <Patient>
            <identifier><system value="urn:oid:{$OID_PESEL}"/><value value="{$pesel}"/></identifier>
            <xsl:if test="normalize-space(c:Patient/c:FamilyName) != '' or normalize-space(c:Patient/c:GivenName) != ''">
              <name>
                <xsl:if test="normalize-space(c:Patient/c:FamilyName) != ''"><family value="{normalize-space(c:Patient/c:FamilyName)}"/></xsl:if>
                <xsl:if test="normalize-space(c:Patient/c:GivenName) != ''"><given value="{normalize-space(c:Patient/c:GivenName)}"/></xsl:if>
              </name>
            </xsl:if>
            <xsl:call-template name="telecom"><xsl:with-param name="contact" select="c:Patient/c:Contact"/></xsl:call-template>
            <xsl:for-each select="c:Patient/c:ContactPerson">
              <contact>
                <name><text value="{normalize-space(c:Name)}"/></name>
                <xsl:call-template name="telecom"><xsl:with-param name="contact" select="c:Contact"/></xsl:call-template>
              </contact>
            </xsl:for-each>
          </Patient>
        </resource>
        <request><method value="PUT"/><url value="Patient?identifier=urn:oid:{$OID_PESEL}|{$pesel}"/></request>
      </entry>
      <entry>
        <resource>
          <Appointment>
            <xsl:if test="c:Urgency != ''">
              <extension url="{$URGENCY}"><valueCode value="{normalize-space(c:Urgency)}"/></extension>
            </xsl:if>
            <xsl:call-template name="own-id"><xsl:with-param name="value" select="c:AppointmentId"/></xsl:call-template>
            <status value="booked"/>
            <xsl:call-template name="specialty"/>
            <xsl:call-template name="visit-kind"><xsl:with-param name="kind" select="normalize-space(c:VisitKind)"/></xsl:call-template>
            <start value="{normalize-space(c:Start)}"/>
            <end value="{normalize-space(c:End)}"/>
            <xsl:if test="c:SlotId != ''">
              <slot><type value="Slot"/><xsl:call-template name="own-id"><xsl:with-param name="value" select="c:SlotId"/></xsl:call-template></slot>
            </xsl:if>
            <xsl:if test="c:Comment != ''"><comment value="{c:Comment}"/></xsl:if>
            <xsl:if test="c:ReferralKey != ''">
              <basedOn><type value="ServiceRequest"/><identifier><value value="{normalize-space(c:ReferralKey)}"/></identifier></basedOn>
            </xsl:if>
            <participant>
              <actor>
                <type value="Patient"/>
                <identifier><system value="urn:oid:{$OID_PESEL}"/><value value="{$pesel}"/></identifier>
                <xsl:if test="normalize-space(concat(c:Patient/c:GivenName, c:Patient/c:FamilyName)) != ''">
                  <display value="{normalize-space(concat(c:Patient/c:GivenName, ' ', c:Patient/c:FamilyName))}"/>
                </xsl:if>
              </actor>
              <status value="accepted"/>
            </participant>
            <xsl:for-each select="c:Practitioner">
              <participant>
                <xsl:call-template name="practitioner-actor"><xsl:with-param name="p" select="."/></xsl:call-template>
                <status value="accepted"/>
              </participant>
            </xsl:for-each>
          </Appointment>
        </resource>
        <xsl:call-template name="conditional"><xsl:with-param name="type" select="'Appointment'"/><xsl:with-param name="id" select="c:AppointmentId"/></xsl:call-template>
      </entry>
    </Bundle>
  </xsl:template>

  <!-- ======================================= Reschedule and Cancel: PATCH of a known booking
       The canonical form holds the partial Appointment (only what changes), which the rules and the
       gateway's memory read; FHIR written out (P1, cergw translate) carries it as a FHIRPath Patch
       Parameters body (gw_fhir_patch_as_parameters). -->
  <xsl:template match="c:RescheduleAppointmentRequest | c:CancelAppointmentRequest">
    <xsl:variable name="cancel" select="boolean(self::c:CancelAppointmentRequest)"/>
    <Bundle>
      <type value="transaction"/>
      <entry>
        <resource>
          <Appointment>
            <xsl:call-template name="own-id"><xsl:with-param name="value" select="c:AppointmentId"/></xsl:call-template>
            <xsl:choose>
              <xsl:when test="$cancel">
                <status value="cancelled"/>
                <xsl:if test="c:Reason != ''"><cancelationReason><text value="{c:Reason}"/></cancelationReason></xsl:if>
              </xsl:when>
              <xsl:otherwise><status value="booked"/></xsl:otherwise>
            </xsl:choose>
            <xsl:call-template name="specialty"/>
            <xsl:if test="not($cancel)">
              <start value="{normalize-space(c:Start)}"/>
              <end value="{normalize-space(c:End)}"/>
              <xsl:if test="c:SlotId != ''">
                <slot><type value="Slot"/><xsl:call-template name="own-id"><xsl:with-param name="value" select="c:SlotId"/></xsl:call-template></slot>
              </xsl:if>
            </xsl:if>
          </Appointment>
        </resource>
        <xsl:call-template name="conditional">
          <xsl:with-param name="method" select="'PATCH'"/>
          <xsl:with-param name="type" select="'Appointment'"/>
          <xsl:with-param name="id" select="c:AppointmentId"/>
        </xsl:call-template>
      </entry>
    </Bundle>
  </xsl:template>

  <!-- ================================================ GetAppointmentStatus -->
  <xsl:template match="c:GetAppointmentStatusRequest">
    <Parameters>
      <parameter>
        <name value="appointment"/>
        <valueIdentifier>
          <system value="urn:oid:{$OID_RPWDL}.{normalize-space(c:Clinic/c:Rpwdl)}"/>
          <value value="{normalize-space(c:AppointmentId)}"/>
        </valueIdentifier>
      </parameter>
    </Parameters>
  </xsl:template>
</xsl:stylesheet>
